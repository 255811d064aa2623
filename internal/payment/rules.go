package payment

import (
	"context"
	"strconv"

	"github.com/junction-go/junction/fault"
)

// CommandKind is what the order saga asks of payment-service.
type CommandKind string

// The saga's commands.
const (
	Authorize CommandKind = "authorize" // hold the amount (the step)
	Void      CommandKind = "void"      // give back whatever is held or taken (its compensation)
	Capture   CommandKind = "capture"   // take what is held (the pivot)
)

// Command is one saga command about one order's payment.
type Command struct {
	Kind CommandKind
	// Key is the step's idempotency key: the same for every attempt, and
	// sent to the provider, so a command done twice has one effect.
	Key      string
	OrderID  int64
	Amount   int64 // Authorize
	Currency string
	Card     string
}

// Outcome is what a command did: the payment after it, and the answer for
// the saga.
type Outcome struct {
	// Next is the payment after the command; Changed says whether it
	// differs from the one before (and must be stored).
	Next    Payment
	Changed bool
	OK      bool
	Reason  string
}

// Handle applies cmd to the order's payment, prev (exists is false when
// none is recorded), calling the provider where the rules say:
//
//	command    payment before            provider call                then           answer
//	authorize  none                      authorize (declined: no hold) authorized     ok, or "card declined"
//	authorize  authorized or captured    -                            unchanged      ok (a repeat)
//	authorize  declined                  -                            unchanged      "card declined"
//	authorize  voided or refunded        -                            unchanged      "the payment was cancelled" (a late authorize after the void)
//	void       none                      void or refund all it holds  voided         ok (a mark: a late authorize is refused)
//	void       authorized                void                         voided         ok
//	                                     (refused: captured by a lost  refunded       ok
//	                                     answer) refund
//	void       captured                  refund                       refunded       ok
//	void       declined, voided, refunded -                           unchanged      ok
//	capture    authorized                capture                      captured       ok, or "could not be captured" (refused)
//	capture    captured                  -                            unchanged      ok (a repeat)
//	capture    anything else             -                            unchanged      "nothing was authorized to capture" (a capture after a void)
//
// A provider fault (down, slow) is returned as an error, and the command
// is tried again with the same key; a provider's refusal (conflict, not
// found) is an answer.
func Handle(ctx context.Context, provider Provider, prev Payment, exists bool, cmd Command) (Outcome, error) {
	next, ok, reason := prev, true, ""
	switch cmd.Kind {
	case Authorize:
		if !exists {
			a, err := provider.Authorize(ctx, cmd.Key, strconv.FormatInt(cmd.OrderID, 10), cmd.Amount, cmd.Currency, cmd.Card)
			if err != nil {
				return Outcome{}, err
			}
			next = Payment{OrderID: cmd.OrderID, PaymentID: a.PaymentID, State: Authorized, Amount: cmd.Amount, Currency: cmd.Currency}
			if a.Declined {
				next.State, next.Reason = Declined, "card declined"
			}
		}
		switch next.State {
		case Authorized, Captured:
		case Declined:
			ok, reason = false, "card declined"
		default:
			ok, reason = false, "the payment was cancelled"
		}
	case Void:
		switch {
		case !exists:
			// Nothing recorded: either nothing was authorized, or the
			// answer was lost in a crash. Undo what the provider holds,
			// and leave a mark so a late authorization is refused.
			if _, err := giveBack(ctx, provider, cmd.Key, cmd.OrderID, ""); err != nil {
				return Outcome{}, err
			}
			next = Payment{OrderID: cmd.OrderID, State: Voided, Reason: "voided before it was recorded"}
		case prev.State == Authorized:
			err := provider.Void(ctx, cmd.Key, prev.PaymentID)
			switch {
			case err == nil:
				next.State = Voided
			case fault.Is(err, fault.Conflict):
				// The provider holds it in another state than the one
				// recorded: voided already, or captured by a capture whose
				// answer was lost (the provider acted, the reply did not
				// arrive, and the saga gave up on the step). Ask what it
				// holds and give that back.
				state, err := giveBack(ctx, provider, cmd.Key, cmd.OrderID, prev.PaymentID)
				if err != nil {
					return Outcome{}, err
				}
				next.State = state
			default:
				return Outcome{}, err
			}
		case prev.State == Captured:
			if err := provider.Refund(ctx, cmd.Key, prev.PaymentID); err != nil && !fault.Is(err, fault.Conflict) {
				return Outcome{}, err
			}
			next.State = Refunded
		}
	case Capture:
		switch {
		case exists && prev.State == Authorized:
			if err := provider.Capture(ctx, cmd.Key, prev.PaymentID); err != nil {
				if !fault.Is(err, fault.Conflict) && !fault.Is(err, fault.NotFound) {
					return Outcome{}, err
				}
				ok, reason = false, "the payment could not be captured"
				break
			}
			next.State = Captured
		case exists && prev.State == Captured:
		default:
			ok, reason = false, "nothing was authorized to capture"
		}
	default:
		return Outcome{}, fault.New(fault.Invalid, "payment-service does not handle %q", cmd.Kind)
	}
	return Outcome{Next: next, Changed: next.State != "" && next != prev, OK: ok, Reason: reason}, nil
}

// giveBack voids or refunds what the provider holds for an order (of
// payment id only, when set): how an answer the provider gave and we lost
// is put right, whether nothing was recorded (a crash after it acted) or
// it refused a void (a capture whose answer was lost). It returns the
// state the order's payment ends in: refunded when any was, else voided.
// A payment id the provider does not list is an error to try again.
func giveBack(ctx context.Context, provider Provider, key string, orderID int64, id string) (State, error) {
	ps, err := provider.Payments(ctx, strconv.FormatInt(orderID, 10))
	if err != nil {
		return "", err
	}
	state, found := Voided, false
	for _, p := range ps {
		if id != "" && p.ID != id {
			continue
		}
		found = true
		switch p.Status {
		case string(Authorized):
			err = provider.Void(ctx, key+"/"+p.ID, p.ID)
		case string(Captured):
			err, state = provider.Refund(ctx, key+"/"+p.ID, p.ID), Refunded
		case string(Refunded):
			state = Refunded
		}
		if err != nil && !fault.Is(err, fault.Conflict) {
			return "", err
		}
	}
	if id != "" && !found {
		return "", fault.New(fault.Unavailable, "the provider refused to void payment %s and does not list it; trying again", id)
	}
	return state, nil
}
