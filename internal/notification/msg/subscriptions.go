// Package msg connects notification-service to the broker. This file lists
// every topic it listens to, with its consumer group and handlers.
package msg

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/notification"
	"github.com/junction-go/junction/internal/notification/store"
	"github.com/junction-go/junction/outbox"
)

// MaxDeliveries is how often a message is tried before it is dead-lettered.
const MaxDeliveries = 5

// Subscribe starts notification-service's subscriptions:
//
//	topic          group                  handles
//	orders         notification-service   OrderCreated, OrderConfirmed, OrderRejected, OrderShipped, OrderCancelled
//	shipments      notification-service   ShipmentDispatched
//
// Each message is applied once (inbox), retried in place on transient
// failures, and dead-lettered after MaxDeliveries or at once if it can
// never succeed. Close the returned subscriptions to stop.
func Subscribe(ctx context.Context, sub bus.Subscriber, pub bus.Publisher, st *store.Store, log *slog.Logger) ([]bus.Subscription, error) {
	h := bus.Reliable(outbox.Idempotent(st.DB(), events.GroupNotifications, orderEvent(st)), bus.ReliableConfig{DeadLetters: pub, Group: events.GroupNotifications, MaxDeliveries: MaxDeliveries, Log: log})
	return bus.SubscribeAll(ctx, sub, events.GroupNotifications, map[string]bus.Handler{events.TopicOrders: h, events.TopicShipments: h})
}

// orderEvent records the notification an order event causes. Event types
// it does not know are skipped: a new event is no reason to fail.
func orderEvent(st *store.Store) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		switch m.Type {
		case events.TypeOrderCreated:
			var e events.OrderCreated
			if err := json.Unmarshal(m.Body, &e); err != nil {
				return bus.Permanent(fmt.Errorf("decode %s: %w", m.Type, err))
			}
			n, err := notification.ForOrderCreated(m.ID, e, time.Now().UTC())
			if err != nil {
				return bus.Permanent(err)
			}
			return st.AddTx(ctx, tx, n)
		case events.TypeOrderConfirmed, events.TypeOrderRejected, events.TypeOrderShipped, events.TypeOrderCancelled:
			var e events.OrderStatusChanged
			if err := json.Unmarshal(m.Body, &e); err != nil {
				return bus.Permanent(fmt.Errorf("decode %s: %w", m.Type, err))
			}
			n, err := notification.ForStatusChange(m.ID, e, time.Now().UTC())
			if err != nil {
				return bus.Permanent(err)
			}
			return st.AddTx(ctx, tx, n)
		case events.TypeShipmentDispatched:
			var e events.ShipmentDispatched
			if err := json.Unmarshal(m.Body, &e); err != nil {
				return bus.Permanent(fmt.Errorf("decode %s: %w", m.Type, err))
			}
			n, err := notification.ForShipmentDispatched(m.ID, e, time.Now().UTC())
			if err != nil {
				return bus.Permanent(err)
			}
			return st.AddTx(ctx, tx, n)
		default:
			return nil
		}
	}
}
