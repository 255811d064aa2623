package shipping

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
)

// DispatchStore is what the dispatcher needs of the store.
type DispatchStore interface {
	// DispatchDue hands every ready shipment due at now to dispatch and
	// saves what it returns, with its messages, in one transaction (its
	// events go out through the outbox); it returns how many.
	DispatchDue(ctx context.Context, now time.Time, dispatch func(Shipment) (Shipment, []*bus.Message, error)) (int, error)
}

// RunDispatcher sends every shipment on its way when its time comes, each
// with its ShipmentDispatched event, looking every poll, until ctx ends.
func RunDispatcher(ctx context.Context, st DispatchStore, poll time.Duration, log *slog.Logger) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := time.Now().UTC()
			if _, err := st.DispatchDue(ctx, now, func(sh Shipment) (Shipment, []*bus.Message, error) { return Leave(sh, now) }); err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "dispatch", "err", err)
			}
		}
	}
}

// Leave is a due shipment on its way, with the ShipmentDispatched
// event that says so.
func Leave(sh Shipment, now time.Time) (Shipment, []*bus.Message, error) {
	sh = Dispatch(sh, now)
	body, err := json.Marshal(events.ShipmentDispatched{Event: events.TypeShipmentDispatched, OrderID: sh.OrderID, UserID: sh.UserID, TrackingCode: sh.TrackingCode, DispatchedAt: now})
	if err != nil {
		return sh, nil, err
	}
	id := strconv.FormatInt(sh.OrderID, 10)
	return sh, []*bus.Message{{
		ID: "shipment-" + id + "-dispatched", Type: events.TypeShipmentDispatched, Source: events.SourceShippingService,
		Time: now, Key: id, CorrelationID: id, Body: body,
	}}, nil
}
