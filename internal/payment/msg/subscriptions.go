// Package msg connects payment-service to the broker. This file lists
// every topic it listens to, with its consumer group and handlers.
package msg

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

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

// undoUnrecorded voids or refunds every payment the provider holds for
// an order this service has no record of.
func (h *handler) undoUnrecorded(ctx context.Context, key string, orderID int64) error {
	ps, err := h.provider.Payments(ctx, strconv.FormatInt(orderID, 10))
	if err != nil {
		return err
	}
	for _, p := range ps {
		switch p.Status {
		case string(payment.Authorized):
			err = h.provider.Void(ctx, key+"/"+p.ID, p.ID)
		case string(payment.Captured):
			err = h.provider.Refund(ctx, key+"/"+p.ID, p.ID)
		}
		if err != nil && !fault.Is(err, fault.Conflict) {
			return err
		}
	}
	return nil
}

func (h *handler) handle(ctx context.Context, m *bus.Message) error {
	c, err := saga.ParseCommand(m)
	if err != nil {
		return err
	}
	var ref events.OrderRef
	if err := json.Unmarshal(m.Body, &ref); err != nil || ref.OrderID < 1 {
		return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
	}
	prev, err := h.st.Get(ctx, nil, ref.OrderID)
	if err != nil && !fault.Is(err, fault.NotFound) {
		return err
	}
	exists := err == nil
	// next is the payment after this command; ok and reason the reply.
	next, ok, reason := prev, true, ""
	switch m.Type {
	case events.CmdAuthorizePayment:
		var cmd events.AuthorizePayment
		if err := json.Unmarshal(m.Body, &cmd); err != nil || cmd.Amount <= 0 || cmd.Currency == "" {
			return bus.Permanent(fmt.Errorf("decode %s: malformed body", m.Type))
		}
		switch {
		case !exists:
			a, err := h.provider.Authorize(ctx, c.Key, strconv.FormatInt(cmd.OrderID, 10), cmd.Amount, cmd.Currency, cmd.Card)
			if err != nil {
				return err // a fault: redelivered; the provider dedupes by key
			}
			next = payment.Payment{OrderID: cmd.OrderID, PaymentID: a.PaymentID, State: payment.Authorized, Amount: cmd.Amount, Currency: cmd.Currency}
			if a.Declined {
				next.State, next.Reason = payment.Declined, "card declined"
			}
		}
		switch next.State {
		case payment.Authorized, payment.Captured:
		case payment.Declined:
			ok, reason = false, "card declined"
		default:
			ok, reason = false, "the payment was cancelled"
		}
	case events.CmdVoidPayment:
		switch {
		case !exists:
			// Nothing recorded: either nothing was authorized, or the
			// answer was lost in a crash. Ask the provider, undo what it
			// holds, and leave a mark so a late authorization is refused.
			if err := h.undoUnrecorded(ctx, c.Key, ref.OrderID); err != nil {
				return err
			}
			next = payment.Payment{OrderID: ref.OrderID, State: payment.Voided, Reason: "voided before it was recorded"}
		case prev.State == payment.Authorized:
			if err := h.provider.Void(ctx, c.Key, prev.PaymentID); err != nil && !fault.Is(err, fault.Conflict) {
				return err
			}
			next.State = payment.Voided
		case prev.State == payment.Captured:
			if err := h.provider.Refund(ctx, c.Key, prev.PaymentID); err != nil && !fault.Is(err, fault.Conflict) {
				return err
			}
			next.State = payment.Refunded
		}
	case events.CmdCapturePayment:
		switch {
		case exists && prev.State == payment.Authorized:
			if err := h.provider.Capture(ctx, c.Key, prev.PaymentID); err != nil {
				if !fault.Is(err, fault.Conflict) && !fault.Is(err, fault.NotFound) {
					return err
				}
				ok, reason = false, "the payment could not be captured"
				break
			}
			next.State = payment.Captured
		case exists && prev.State == payment.Captured:
		default:
			ok, reason = false, "nothing was authorized to capture"
		}
	default:
		return bus.Permanent(fmt.Errorf("payment-service does not handle %s", m.Type))
	}
	if h.failpoint != nil {
		h.failpoint("payment.afterProviderCallBeforeReply")
	}
	reply, err := c.Reply(ok, reason, nil)
	if err != nil {
		return err
	}
	reply.Source = events.SourcePaymentService
	ob := h.st.Outbox()
	return ob.Idempotent(events.GroupPayments, func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		// Re-read inside the transaction: a replica may have moved it on.
		cur, err := h.st.Get(ctx, tx, ref.OrderID)
		if err == nil && cur != prev {
			return fmt.Errorf("payment %d changed under this command; trying again", ref.OrderID)
		}
		if err != nil && !fault.Is(err, fault.NotFound) {
			return err
		}
		if next.State != "" && next != prev {
			if err := h.st.Put(ctx, tx, next); err != nil {
				return err
			}
		}
		return ob.Add(ctx, tx, c.ReplyTo, reply)
	})(ctx, m)
}
