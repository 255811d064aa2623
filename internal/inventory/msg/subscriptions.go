// Package msg connects inventory-service to the broker. This file lists
// every topic it listens to, with its consumer group and handlers.
package msg

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/internal/inventory/store"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
)

// MaxDeliveries is how often a message is tried before it is dead-lettered.
const MaxDeliveries = 5

// Subscribe starts inventory-service's subscriptions:
//
//	topic                group              handles
//	inventory-commands   inventory-service  ReserveStock, ReleaseStock (saga participant)
//	orders               inventory-service  OrderConfirmed (commits the reservation)
//
// Every message is applied once (inbox) in one transaction with its effect
// and its reply (outbox). Close the returned subscriptions to stop.
func Subscribe(ctx context.Context, sub bus.Subscriber, pub bus.Publisher, st *store.Store, ob *outbox.Outbox, log *slog.Logger) ([]bus.Subscription, error) {
	wrap := func(fn outbox.TxHandler) bus.Handler {
		return bus.Reliable(ob.Idempotent(events.GroupInventory, fn), bus.ReliableConfig{DeadLetters: pub, Group: events.GroupInventory, MaxDeliveries: MaxDeliveries, Log: log})
	}
	return bus.SubscribeAll(ctx, sub, events.GroupInventory, map[string]bus.Handler{
		events.TopicInventoryCommands: wrap(command(st, ob)),
		// OrderCreated, OrderShipped and the rest are acknowledged at once.
		events.TopicOrders: bus.OnlyTypes(events.TypeOrderConfirmed)(wrap(orderEvent(st))),
	})
}

// command applies a saga command and writes its reply.
func command(st *store.Store, ob *outbox.Outbox) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		c, err := saga.ParseCommand(m)
		if err != nil {
			return err
		}
		var reply *bus.Message
		switch m.Type {
		case events.CmdReserveStock:
			var body events.ReserveStock
			if err := json.Unmarshal(m.Body, &body); err != nil || body.OrderID < 1 || len(body.Items) == 0 {
				return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
			}
			lines := make([]inventory.Line, len(body.Items))
			for i, it := range body.Items {
				lines[i] = inventory.Line{SKU: it.SKU, Quantity: int64(it.Quantity)}
			}
			r, err := inventory.Reserve(ctx, st.In(tx), body.OrderID, lines)
			if err != nil {
				return err
			}
			switch r.State {
			case inventory.Reserved, inventory.Committed:
				reply, err = c.Reply(true, "", events.StockReserved{Total: r.Total, Currency: r.Currency})
			case inventory.Released:
				reply, err = c.Reply(false, "the order was cancelled", nil)
			default:
				reply, err = c.Reply(false, r.Reason, nil)
			}
			if err != nil {
				return err
			}
		case events.CmdReleaseStock:
			var body events.OrderRef
			if err := json.Unmarshal(m.Body, &body); err != nil || body.OrderID < 1 {
				return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
			}
			if _, err := inventory.ReleaseOf(ctx, st.In(tx), body.OrderID); err != nil {
				return err
			}
			if reply, err = c.Reply(true, "", nil); err != nil {
				return err
			}
		default:
			return bus.Permanent(fmt.Errorf("inventory-service does not handle %s", m.Type))
		}
		reply.Source = events.SourceInventoryService
		return ob.Add(ctx, tx, c.ReplyTo, reply)
	}
}

// orderEvent commits the reservation of a confirmed order; other order
// events are not inventory's business.
func orderEvent(st *store.Store) outbox.TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		if m.Type != events.TypeOrderConfirmed {
			return nil
		}
		id, err := events.OrderKey(m.Key)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s: %w", m.Type, err))
		}
		return inventory.CommitOf(ctx, st.In(tx), id)
	}
}
