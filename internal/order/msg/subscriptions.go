// Package msg connects order-service to the broker. This file lists every
// topic it listens to, with its consumer group and handlers. (What it
// publishes goes through the outbox: OrderCreated, OrderConfirmed,
// OrderRejected, OrderShipped, OrderCancelled on "orders", and the saga's
// commands.)
package msg

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/order/store"
)

// MaxDeliveries is how often a message is tried before it is dead-lettered.
const MaxDeliveries = 5

// Subscribe starts order-service's subscriptions:
//
//	topic           group          handles
//	order-replies   order-service  every saga participant's replies (the saga engine)
//	shipments       order-service  ShipmentDispatched (the order is shipped; choreography)
//
// Close the returned subscriptions to stop.
func Subscribe(ctx context.Context, sub bus.Subscriber, pub bus.Publisher, st *store.Store, log *slog.Logger) ([]bus.Subscription, error) {
	shipped := st.Outbox().Idempotent(events.GroupOrders, func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		if m.Type != events.TypeShipmentDispatched {
			return nil
		}
		id, err := events.OrderKey(m.Key)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s: %w", m.Type, err))
		}
		return st.Shipped(ctx, tx, id)
	})
	reliable := func(h bus.Handler) bus.Handler {
		return bus.Reliable(h, bus.ReliableConfig{DeadLetters: pub, Group: events.GroupOrders, MaxDeliveries: MaxDeliveries, Log: log})
	}
	return bus.SubscribeAll(ctx, sub, events.GroupOrders, map[string]bus.Handler{
		events.TopicOrderReplies: reliable(st.Engine().HandleReply),
		events.TopicShipments:    reliable(shipped),
	})
}
