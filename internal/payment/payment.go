// Package payment is payment-service's domain: holding, taking and giving
// back a customer's money through the payment provider, once per order.
package payment

import (
	"context"
)

// State is where an order's payment is.
type State string

// States.
const (
	Authorized State = "authorized" // the amount is held on the card
	Declined   State = "declined"   // the card was declined; nothing held
	Captured   State = "captured"   // the money was taken
	Voided     State = "voided"     // the hold was released (or a void came first)
	Refunded   State = "refunded"   // the money was given back
)

// Payment is an order's payment.
type Payment struct {
	OrderID   int64
	PaymentID string // the provider's id; empty when nothing was authorized
	State     State
	Amount    int64
	Currency  string
	Reason    string
}

// Authorization is the provider's answer to an authorization: a decline
// is an answer, not an error.
type Authorization struct {
	PaymentID string
	Declined  bool
	Reason    string
}

// Provider is the card processor. Every call carries an idempotency key:
// the same key never has a second effect. A fault (down, slow, 5xx) is
// fault.Unavailable or fault.Timeout; a refusal of the request itself
// (already voided, no such payment) is fault.Conflict or fault.NotFound.
type Provider interface {
	Authorize(ctx context.Context, key, orderRef string, amount int64, currency, card string) (Authorization, error)
	Capture(ctx context.Context, key, paymentID string) error
	Void(ctx context.Context, key, paymentID string) error
	Refund(ctx context.Context, key, paymentID string) error
	// Payments lists what the provider holds for an order: how a lost
	// answer (a crash after the provider acted) is found again.
	Payments(ctx context.Context, orderRef string) ([]ProviderPayment, error)
}

// ProviderPayment is a payment as the provider reports it.
type ProviderPayment struct {
	ID     string
	Status string // authorized, captured, voided, refunded, declined
}
