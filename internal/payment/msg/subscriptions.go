// Package msg connects payment-service to the broker. This file lists
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
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/payment"
	"github.com/junction-go/junction/internal/payment/store"
	"github.com/junction-go/junction/saga"
)

// MaxDeliveries is how often a command is tried before it is
// dead-lettered (the saga sends a new attempt when its step times out).
const MaxDeliveries = 5

// Subscribe starts payment-service's subscription:
//
//	topic              group            handles
//	payment-commands   payment-service  AuthorizePayment, VoidPayment, CapturePayment (saga participant)
//
// The provider is called outside any transaction, with the step's
// idempotency key; then the new state, the inbox record and the reply are
// written in one transaction. A crash between the two calls the provider
// again with the same key on redelivery: no second effect. failpoint
// (nil in production) is called at "payment.afterProviderCallBeforeReply".
func Subscribe(ctx context.Context, sub bus.Subscriber, pub bus.Publisher, st *store.Store, provider payment.Provider, failpoint func(string), log *slog.Logger) (bus.Subscription, error) {
	h := &handler{st: st, provider: provider, failpoint: failpoint}
	return sub.Subscribe(ctx, events.TopicPaymentCommands, events.GroupPayments, bus.Reliable(h.handle, bus.ReliableConfig{DeadLetters: pub, Group: events.GroupPayments, MaxDeliveries: MaxDeliveries, Log: log}))
}

type handler struct {
	st        *store.Store
	provider  payment.Provider
	failpoint func(string)
}

func (h *handler) handle(ctx context.Context, m *bus.Message) error {
	c, err := saga.ParseCommand(m)
	if err != nil {
		return err
	}
	cmd, err := decode(m, c.Key)
	if err != nil {
		return err
	}
	prev, err := h.st.Get(ctx, nil, cmd.OrderID)
	if err != nil && !fault.Is(err, fault.NotFound) {
		return err
	}
	out, err := payment.Handle(ctx, h.provider, prev, err == nil, cmd)
	if err != nil {
		return err // a provider fault: redelivered; the provider dedupes by key
	}
	if h.failpoint != nil {
		h.failpoint("payment.afterProviderCallBeforeReply")
	}
	reply, err := c.Reply(out.OK, out.Reason, nil)
	if err != nil {
		return err
	}
	reply.Source = events.SourcePaymentService
	ob := h.st.Outbox()
	return ob.Idempotent(events.GroupPayments, func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		// Re-read inside the transaction: a replica may have moved it on.
		cur, err := h.st.Get(ctx, tx, cmd.OrderID)
		if err == nil && cur != prev {
			return fmt.Errorf("payment %d changed under this command; trying again", cmd.OrderID)
		}
		if err != nil && !fault.Is(err, fault.NotFound) {
			return err
		}
		if out.Changed {
			if err := h.st.Put(ctx, tx, out.Next); err != nil {
				return err
			}
		}
		return ob.Add(ctx, tx, c.ReplyTo, reply)
	})(ctx, m)
}

// decode reads a saga command's body into the domain's Command; a body
// that can never be read is a permanent failure (a dead letter).
func decode(m *bus.Message, key string) (payment.Command, error) {
	var ref events.OrderRef
	if err := json.Unmarshal(m.Body, &ref); err != nil || ref.OrderID < 1 {
		return payment.Command{}, bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
	}
	cmd := payment.Command{Key: key, OrderID: ref.OrderID}
	switch m.Type {
	case events.CmdAuthorizePayment:
		var a events.AuthorizePayment
		if err := json.Unmarshal(m.Body, &a); err != nil || a.Amount <= 0 || a.Currency == "" {
			return payment.Command{}, bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
		}
		cmd.Kind, cmd.Amount, cmd.Currency, cmd.Card = payment.Authorize, a.Amount, a.Currency, a.Card
	case events.CmdVoidPayment:
		cmd.Kind = payment.Void
	case events.CmdCapturePayment:
		cmd.Kind = payment.Capture
	default:
		return payment.Command{}, bus.Permanent(fmt.Errorf("payment-service does not handle %s", m.Type))
	}
	return cmd, nil
}
