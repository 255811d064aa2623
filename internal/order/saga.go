package order

import (
	"fmt"
	"strconv"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/saga"
)

// The sagas order-service orchestrates.
const (
	// SagaPlaceOrder completes a new order: its instance id is the order
	// id.
	SagaPlaceOrder = "place-order"
	// SagaCancelOrder takes a confirmed order back: its instance id is the
	// order id followed by "-cancel".
	SagaCancelOrder = "cancel-order"
)

// CancelledByCustomer is the reason of an order the customer cancelled.
const CancelledByCustomer = "cancelled by the customer"

// sagaData is what both sagas start with.
type sagaData struct {
	OrderID int64         `json:"orderId"`
	UserID  int64         `json:"userId"`
	Items   []events.Item `json:"items"`
	Card    string        `json:"card,omitempty"`
}

// SagaData returns the start data of o's sagas.
func SagaData(o Order) any {
	d := sagaData{OrderID: o.ID, UserID: o.UserID, Card: o.Card}
	for _, it := range o.Items {
		d.Items = append(d.Items, events.Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	return d
}

// CancelSagaID is the instance id of o's cancellation.
func CancelSagaID(orderID int64) string { return strconv.FormatInt(orderID, 10) + "-cancel" }

// SagaOrder returns the id of the order a saga instance is about, from its
// start data.
func SagaOrder(in *saga.Instance) (int64, error) {
	d, err := data(in)
	if err == nil && d.OrderID < 1 {
		err = fmt.Errorf("saga %s: no order id in its data", in.ID)
	}
	return d.OrderID, err
}

func data(in *saga.Instance) (sagaData, error) {
	var d sagaData
	return d, in.Decode(&d)
}

func ref(in *saga.Instance) (any, error) {
	d, err := data(in)
	return events.OrderRef{OrderID: d.OrderID}, err
}

// PlaceOrderSaga is the order saga: reserve the stock, authorize the
// payment, book the shipment, then capture (the pivot: once the money is
// taken the order is confirmed). A refusal or a silence past a step's
// attempts undoes what was done, latest first: cancel the shipment, void
// the authorization (refund if it was captured), release the stock.
//
//	step               command (topic)                        undo
//	reserve-stock      ReserveStock (inventory-commands)      ReleaseStock
//	authorize-payment  AuthorizePayment (payment-commands)    VoidPayment
//	schedule-shipment  ScheduleShipment (shipping-commands)   CancelShipment
//	capture-payment    CapturePayment (payment-commands)      - (VoidPayment refunds)
func PlaceOrderSaga() *saga.Definition {
	return &saga.Definition{
		Name: SagaPlaceOrder,
		Steps: []saga.Step{
			{
				Name: "reserve-stock",
				Do: saga.Action{Topic: events.TopicInventoryCommands, Type: events.CmdReserveStock, Body: func(in *saga.Instance) (any, error) {
					d, err := data(in)
					return events.ReserveStock{OrderID: d.OrderID, Items: d.Items}, err
				}},
				Undo:    &saga.Action{Topic: events.TopicInventoryCommands, Type: events.CmdReleaseStock, Body: ref},
				Timeout: 5 * time.Second, Attempts: 3,
			},
			{
				Name: "authorize-payment",
				Do: saga.Action{Topic: events.TopicPaymentCommands, Type: events.CmdAuthorizePayment, Body: func(in *saga.Instance) (any, error) {
					d, err := data(in)
					if err != nil {
						return nil, err
					}
					var r events.StockReserved
					if _, err := in.Result("reserve-stock", &r); err != nil {
						return nil, err
					}
					return events.AuthorizePayment{OrderID: d.OrderID, UserID: d.UserID, Amount: r.Total, Currency: r.Currency, Card: d.Card}, nil
				}},
				Undo: &saga.Action{Topic: events.TopicPaymentCommands, Type: events.CmdVoidPayment, Body: ref},
				// A provider outage: the breaker opens and the command is
				// redelivered until the step's deadline; after three silent
				// attempts the saga gives up.
				Timeout: 5 * time.Second, Attempts: 3,
			},
			{
				Name: "schedule-shipment",
				Do: saga.Action{Topic: events.TopicShippingCommands, Type: events.CmdScheduleShipment, Body: func(in *saga.Instance) (any, error) {
					d, err := data(in)
					return events.ScheduleShipment{OrderID: d.OrderID, UserID: d.UserID, Items: d.Items}, err
				}},
				Undo:    &saga.Action{Topic: events.TopicShippingCommands, Type: events.CmdCancelShipment, Body: ref},
				Timeout: 5 * time.Second, Attempts: 3,
			},
			{
				Name:    "capture-payment",
				Do:      saga.Action{Topic: events.TopicPaymentCommands, Type: events.CmdCapturePayment, Body: ref},
				Timeout: 5 * time.Second, Attempts: 6,
			},
		},
	}
}

// CancelOrderSaga takes back a confirmed order that has not shipped:
// cancel the shipment first (it refuses once the parcel has left, and then
// nothing else happens), then refund and restock, retried until they
// succeed.
func CancelOrderSaga() *saga.Definition {
	return &saga.Definition{
		Name: SagaCancelOrder,
		Steps: []saga.Step{
			{Name: "cancel-shipment", Do: saga.Action{Topic: events.TopicShippingCommands, Type: events.CmdCancelShipment, Body: ref}, Timeout: 5 * time.Second, Attempts: 3},
			{Name: "refund-payment", Do: saga.Action{Topic: events.TopicPaymentCommands, Type: events.CmdVoidPayment, Body: ref}, Timeout: 5 * time.Second, Attempts: 100},
			{Name: "restock", Do: saga.Action{Topic: events.TopicInventoryCommands, Type: events.CmdReleaseStock, Body: ref}, Timeout: 5 * time.Second, Attempts: 100},
		},
	}
}

// PlaceEnded is what the end of o's place-order saga does to it: the new
// status and reason, and the event to publish.
func PlaceEnded(o Order, in *saga.Instance, now time.Time) (Order, []*bus.Message, error) {
	switch {
	case in.Status == saga.Completed:
		o.Status, o.Reason = StatusConfirmed, ""
	case in.Status == saga.NeedsAttention:
		o.Status, o.Reason = StatusNeedsAttention, "we could not undo this order automatically; our staff will finish it"
	case in.Reason == CancelledByCustomer:
		o.Status, o.Reason = StatusCancelled, in.Reason
	default:
		o.Status, o.Reason = StatusRejected, in.Reason
	}
	o.UpdatedAt = now
	m, err := statusEvent(o)
	return o, []*bus.Message{m}, err
}

// CancelEnded is what the end of o's cancel-order saga does to it: a
// completed cancellation cancels it; a refused one leaves it as it was,
// with the reason.
func CancelEnded(o Order, in *saga.Instance, now time.Time) (Order, []*bus.Message, error) {
	switch in.Status {
	case saga.Completed:
		o.Status, o.Reason = StatusCancelled, CancelledByCustomer
	case saga.NeedsAttention:
		o.Status, o.Reason = StatusNeedsAttention, "the cancellation could not finish; our staff will finish it"
	default:
		o.Reason = "could not cancel: " + in.Reason
		o.UpdatedAt = now
		return o, nil, nil
	}
	o.UpdatedAt = now
	m, err := statusEvent(o)
	return o, []*bus.Message{m}, err
}

// Shipped is what a dispatched shipment does to o: a confirmed order is
// shipped; any other is left as it is (no events).
func Shipped(o Order, now time.Time) (Order, []*bus.Message, error) {
	if o.Status != StatusConfirmed {
		return o, nil, nil
	}
	o.Status, o.Reason, o.UpdatedAt = StatusShipped, "", now
	m, err := statusEvent(o)
	return o, []*bus.Message{m}, err
}

var statusEvents = map[Status]string{
	StatusConfirmed:      events.TypeOrderConfirmed,
	StatusRejected:       events.TypeOrderRejected,
	StatusShipped:        events.TypeOrderShipped,
	StatusCancelled:      events.TypeOrderCancelled,
	StatusNeedsAttention: events.TypeOrderRejected,
}

func statusEvent(o Order) (*bus.Message, error) {
	typ := statusEvents[o.Status]
	e := events.OrderStatusChanged{Event: typ, OrderID: o.ID, UserID: o.UserID, Status: string(o.Status), Reason: o.Reason, At: o.UpdatedAt}
	for _, it := range o.Items {
		e.Items = append(e.Items, events.Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	return orderMessage(o, typ, string(o.Status), o.UpdatedAt, e)
}
