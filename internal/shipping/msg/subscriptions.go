// Package msg connects shipping-service to the broker. This file lists
// every topic it listens to, with its consumer group and handlers.
package msg

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
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

// Config tunes shipping's behaviour.
type Config struct {
	// DispatchDelay is how long after confirmation a shipment leaves.
	DispatchDelay time.Duration
	// RefuseRate is the share of bookings refused ("no courier"), chosen
	// by order id and Seed so a retry gets the same answer.
	RefuseRate float64
	Seed       uint64
}

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
		events.TopicOrders:           wrap(orderEvent(st, cfg)),
	})
}

func command(st *store.Store, cfg Config) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		c, err := saga.ParseCommand(m)
		if err != nil {
			return err
		}
		ok, reason := true, ""
		switch m.Type {
		case events.CmdScheduleShipment:
			var body events.ScheduleShipment
			if err := json.Unmarshal(m.Body, &body); err != nil || body.OrderID < 1 {
				return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
			}
			refuse := ""
			if refuses(body.OrderID, cfg) {
				refuse = "no courier can take this shipment"
			}
			sh, err := st.Schedule(ctx, tx, body.OrderID, body.UserID, refuse)
			if err != nil {
				return err
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
			sh, err := st.Cancel(ctx, tx, body.OrderID)
			if err != nil {
				return err
			}
			if sh.State == shipping.Dispatched {
				ok, reason = false, "the shipment has left"
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

func refuses(orderID int64, cfg Config) bool {
	if cfg.RefuseRate <= 0 {
		return false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", cfg.Seed, orderID)
	return float64(h.Sum64()%10000)/10000 < cfg.RefuseRate
}

// orderEvent starts the dispatch clock of a confirmed order's shipment.
func orderEvent(st *store.Store, cfg Config) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		if m.Type != events.TypeOrderConfirmed {
			return nil
		}
		id, err := strconv.ParseInt(m.Key, 10, 64)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s with key %q: not an order id", m.Type, m.Key))
		}
		return st.Confirmed(ctx, tx, id, time.Now().Add(cfg.DispatchDelay))
	}
}
