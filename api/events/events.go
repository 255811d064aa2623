// Package events lists every topic, consumer group and event type of
// Junction's messaging, with the body of each event: one place for the
// asynchronous contract, as the .proto files are for gRPC.
//
// Events travel as CloudEvents 1.0 in binary mode (see package bus): the
// attributes are transport headers named as each protocol binding says,
// the body is the JSON below (datacontenttype application/json), and the
// CloudEvents partition key is the order id, so that every event of one
// order is handled in order. Every message has id, type, source,
// specversion, time, partitionkey and correlationid; causationid where
// another message caused it; W3C traceparent as its own header.
//
//	broker     attribute names            content type
//	NATS       ce-id, ce-type, …          content-type header
//	Kafka      ce_id, ce_type, …          content-type record header
//	RabbitMQ   cloudEvents:id, …          content-type property
//	ActiveMQ   ce-id, ce-type, …          content-type header (STOMP has no binding; its headers are HTTP-like)
//
// Below, attribute names are written in the HTTP form (ce-replyto).
package events

import (
	"fmt"
	"strconv"
	"time"

	"github.com/junction-go/junction/api/services"
)

// Topics.
const (
	// TopicOrders carries the order lifecycle: OrderCreated, … Key: the
	// order id.
	TopicOrders = "orders"
	// TopicOrderHistory carries each order's history as it is written
	// (OrderHistory: its status changes and saga steps, numbered), for
	// live readers only: the gateway follows it to push to WebSockets.
	// Nobody works from it, and a broker may drop what nobody follows.
	// Key: the order id.
	TopicOrderHistory = "order-history"
	// TopicShipments carries ShipmentDispatched. Key: the order id.
	TopicShipments = "shipments"

	// Saga commands, sent by order-service's saga (package saga: headers
	// saga-id, saga-step, saga-dir, saga-key, ce-replyto). Key: the order
	// id. Participants answer on the topic in ce-replyto.
	TopicInventoryCommands = "inventory-commands" // ReserveStock, ReleaseStock
	TopicPaymentCommands   = "payment-commands"   // AuthorizePayment, VoidPayment, CapturePayment
	TopicShippingCommands  = "shipping-commands"  // ScheduleShipment, CancelShipment
	// TopicOrderReplies carries every participant's replies to
	// order-service's saga.
	TopicOrderReplies = "order-replies"
)

// TopicDeadLetters is where every group's given-up messages go (the
// bus package's DeadLetterTopic).
const TopicDeadLetters = "deadletter"

// Publishers says which service publishes to which topics; the broker
// lets each publish there only (the embedded NATS's subject permissions).
// deadletter-service redrives a dead letter to the topic it came from:
// any topic.
var Publishers = map[string][]string{
	services.Order:        {TopicOrders, TopicOrderHistory, TopicInventoryCommands, TopicPaymentCommands, TopicShippingCommands, TopicDeadLetters},
	services.Inventory:    {TopicOrderReplies, TopicDeadLetters},
	services.Payment:      {TopicOrderReplies, TopicDeadLetters},
	services.Shipping:     {TopicOrderReplies, TopicShipments, TopicDeadLetters},
	services.Notification: {TopicDeadLetters},
	services.DeadLetter:   AllTopics(),
	services.Gateway:      {},
}

// LiveFollowers says which service follows which topics live (a plain
// subscription, bus.LiveSubscriber): the gateway, for its WebSockets.
var LiveFollowers = map[string][]string{
	services.Gateway: {TopicOrderHistory},
}

// AllTopics are every topic of the shop.
func AllTopics() []string {
	return []string{TopicOrders, TopicOrderHistory, TopicShipments, TopicInventoryCommands, TopicPaymentCommands, TopicShippingCommands, TopicOrderReplies, TopicDeadLetters}
}

// Consumer groups.
const (
	// GroupNotifications is notification-service on TopicOrders.
	GroupNotifications = "notification-service"
	// GroupOrders is order-service on TopicOrderReplies and TopicShipments.
	GroupOrders = "order-service"
	// GroupInventory is inventory-service on TopicInventoryCommands and
	// TopicOrders (OrderConfirmed commits a reservation).
	GroupInventory = "inventory-service"
	// GroupPayments is payment-service on TopicPaymentCommands.
	GroupPayments = "payment-service"
	// GroupShipping is shipping-service on TopicShippingCommands and
	// TopicOrders (OrderConfirmed starts the dispatch clock).
	GroupShipping = "shipping-service"
	// GroupDeadLetters is deadletter-service on bus.DeadLetterTopic
	// ("deadletter"), where every group's given-up messages go.
	GroupDeadLetters = "deadletter-service"
)

// Event types (ce-type).
const (
	TypeOrderCreated   = "OrderCreated"
	TypeOrderConfirmed = "OrderConfirmed"
	TypeOrderRejected  = "OrderRejected"
	TypeOrderShipped   = "OrderShipped"
	TypeOrderCancelled = "OrderCancelled"

	TypeShipmentDispatched = "ShipmentDispatched"

	TypeOrderHistory = "OrderHistory"
)

// Command types (ce-type); the reply to each is its type + "Reply".
const (
	CmdReserveStock     = "ReserveStock"
	CmdReleaseStock     = "ReleaseStock"
	CmdAuthorizePayment = "AuthorizePayment"
	CmdVoidPayment      = "VoidPayment"
	CmdCapturePayment   = "CapturePayment"
	CmdScheduleShipment = "ScheduleShipment"
	CmdCancelShipment   = "CancelShipment"
)

// Source is the ce-source of events each service publishes.
const (
	SourceOrderService     = "order-service"
	SourceShippingService  = "shipping-service"
	SourceInventoryService = "inventory-service"
	SourcePaymentService   = "payment-service"
)

// Item is one line of an order.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// OrderCreated is published when an order is placed. It keeps the
// tutorial's shape: {"event":"OrderCreated","orderId":123,"userId":456,...}.
type OrderCreated struct {
	Event     string    `json:"event"`
	OrderID   int64     `json:"orderId"`
	UserID    int64     `json:"userId"`
	Items     []Item    `json:"items"`
	CreatedAt time.Time `json:"createdAt"`
}

// OrderStatusChanged is the body of OrderConfirmed, OrderRejected,
// OrderShipped and OrderCancelled.
type OrderStatusChanged struct {
	Event   string `json:"event"`
	OrderID int64  `json:"orderId"`
	UserID  int64  `json:"userId"`
	Status  string `json:"status"`
	// Reason says why an order was rejected or cancelled.
	Reason string    `json:"reason,omitempty"`
	Items  []Item    `json:"items,omitempty"`
	At     time.Time `json:"at"`
}

// OrderHistory is entries appended to one order's history in one
// transaction, in seq order. Seq counts from 1 per order with no gap, so a
// reader that sees seq n+2 after n knows it missed one and reads the
// order's history (GET /api/orders/{id}/events?after=n).
type OrderHistory struct {
	OrderID int64          `json:"orderId"`
	UserID  int64          `json:"userId"`
	Events  []HistoryEntry `json:"events"`
}

// HistoryEntry is one entry of an order's history: a change of its status
// (kind "status": status, detail the reason) or a saga's start or end
// (kind "saga": saga, outcome) or step (kind "step": saga, step, outcome,
// detail).
type HistoryEntry struct {
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status,omitempty"`
	Saga    string    `json:"saga,omitempty"`
	Step    string    `json:"step,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// ShipmentDispatched is published when a shipment leaves the warehouse.
type ShipmentDispatched struct {
	Event        string    `json:"event"`
	OrderID      int64     `json:"orderId"`
	UserID       int64     `json:"userId"`
	TrackingCode string    `json:"trackingCode"`
	DispatchedAt time.Time `json:"dispatchedAt"`
}

// ReserveStock holds every line of an order, all or none. The reply's
// data is a StockReserved; a refusal's reason names the SKU short of
// stock.
type ReserveStock struct {
	OrderID int64  `json:"orderId"`
	Items   []Item `json:"items"`
}

// StockReserved is ReserveStock's reply data: what the order costs.
type StockReserved struct {
	Total    int64  `json:"total"` // minor units
	Currency string `json:"currency"`
}

// OrderRef is the body of the commands that need only the order:
// ReleaseStock, VoidPayment, CapturePayment, CancelShipment.
type OrderRef struct {
	OrderID int64 `json:"orderId"`
}

// AuthorizePayment holds the amount on the customer's card. A declined
// card is a refusal (reason "card declined").
type AuthorizePayment struct {
	OrderID  int64  `json:"orderId"`
	UserID   int64  `json:"userId"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// Card is the card token the customer paid with.
	Card string `json:"card"`
}

// ScheduleShipment books a shipment; it is dispatched once the order is
// confirmed (OrderConfirmed) and the dispatch delay has passed.
type ScheduleShipment struct {
	OrderID int64  `json:"orderId"`
	UserID  int64  `json:"userId"`
	Items   []Item `json:"items"`
}

// OrderKey returns the order id a message about an order is keyed by (the
// Key of every message on the order topics). A key that is not one is an
// error no redelivery can cure.
func OrderKey(key string) (int64, error) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("key %q is not an order id", key)
	}
	return id, nil
}
