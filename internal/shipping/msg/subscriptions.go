// Package msg connects shipping-service to the broker. This file lists
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
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/internal/shipping/store"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
)

// MaxDeliveries is how often a message is tried before it is dead-lettered.
const MaxDeliveries = 5

// Config is shipping-service's (shipping.Config).
type Config = shipping.Config

// Subscribe starts shipping-service's subscriptions:
//
//	topic               group             handles
//	shipping-commands   shipping-service  ScheduleShipment, CancelShipment (saga participant)
//	orders              shipping-service  OrderConfirmed (starts the dispatch clock)
//
// Every message is applied once (inbox) in one transaction with its effect
// and its reply (outbox). Close the returned subscriptions to stop.
func Subscribe(ctx context.Context, sub bus.Subscriber, pub bus.Publisher, st *store.Store, cfg Config, log *slog.Logger) ([]bus.Subscription, error) {
	wrap := func(fn outbox.TxHandler) bus.Handler {
		return bus.Reliable(st.Outbox().Idempotent(events.GroupShipping, fn), bus.ReliableConfig{DeadLetters: pub, Group: events.GroupShipping, MaxDeliveries: MaxDeliveries, Log: log})
	}
	return bus.SubscribeAll(ctx, sub, events.GroupShipping, map[string]bus.Handler{
		events.TopicShippingCommands: wrap(command(st, cfg)),
		// OrderCreated, OrderShipped and the rest are acknowledged at once.
		events.TopicOrders: bus.OnlyTypes(events.TypeOrderConfirmed)(wrap(orderEvent(st, cfg))),
	})
}

func command(st *store.Store, cfg Config) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		c, err := saga.ParseCommand(m)
		if err != nil {
			return err
		}
		ok, reason := true, ""
		now := time.Now().UTC()
		switch m.Type {
		case events.CmdScheduleShipment:
			var body events.ScheduleShipment
			if err := json.Unmarshal(m.Body, &body); err != nil || body.OrderID < 1 {
				return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
			}
			refuse := ""
			if shipping.Refuses(body.OrderID, cfg.RefuseRate, cfg.Seed) {
				refuse = "no courier can take this shipment"
			}
			prev, exists, err := st.Load(ctx, tx, body.OrderID)
			if err != nil {
				return err
			}
			sh, changed := shipping.Schedule(prev, exists, body.OrderID, body.UserID, refuse, now)
			if changed {
				if err := st.Save(ctx, tx, sh); err != nil {
					return err
				}
			}
			switch sh.State {
			case shipping.Refused:
				ok, reason = false, sh.Reason
			case shipping.Cancelled:
				ok, reason = false, "the order was cancelled"
			}
		case events.CmdCancelShipment:
			var body events.OrderRef
			if err := json.Unmarshal(m.Body, &body); err != nil || body.OrderID < 1 {
				return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
			}
			prev, exists, err := st.Load(ctx, tx, body.OrderID)
			if err != nil {
				return err
			}
			sh, changed, refused := shipping.Cancel(prev, exists, body.OrderID, now)
			if changed {
				if err := st.Save(ctx, tx, sh); err != nil {
					return err
				}
			}
			if refused != "" {
				ok, reason = false, refused
			}
		default:
			return bus.Permanent(fmt.Errorf("shipping-service does not handle %s", m.Type))
		}
		reply, err := c.Reply(ok, reason, nil)
		if err != nil {
			return err
		}
		reply.Source = events.SourceShippingService
		return st.Outbox().Add(ctx, tx, c.ReplyTo, reply)
	}
}

// orderEvent starts the dispatch clock of a confirmed order's shipment.
func orderEvent(st *store.Store, cfg Config) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		if m.Type != events.TypeOrderConfirmed {
			return nil
		}
		id, err := events.OrderKey(m.Key)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s: %w", m.Type, err))
		}
		prev, exists, err := st.Load(ctx, tx, id)
		if err != nil || !exists {
			return err // a confirmation before the booking: nothing to start
		}
		now := time.Now().UTC()
		if sh, changed := shipping.Confirmed(prev, now.Add(cfg.DispatchDelay), now); changed {
			return st.Save(ctx, tx, sh)
		}
		return nil
	}
}
