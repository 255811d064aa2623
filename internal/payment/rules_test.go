package payment_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/payment"
)

// provider records the calls it gets and answers as told.
type provider struct {
	calls    []string
	declined bool
	err      error // every call's error
	voidErr  error // Void's error, when set
	holds    []payment.ProviderPayment
}

func (p *provider) Authorize(_ context.Context, key, _ string, _ int64, _, _ string) (payment.Authorization, error) {
	p.calls = append(p.calls, "authorize "+key)
	return payment.Authorization{PaymentID: "pay-1", Declined: p.declined}, p.err
}
func (p *provider) Capture(_ context.Context, key, id string) error {
	p.calls = append(p.calls, "capture "+id)
	return p.err
}
func (p *provider) Void(_ context.Context, key, id string) error {
	p.calls = append(p.calls, "void "+id)
	if p.voidErr != nil {
		return p.voidErr
	}
	return p.err
}
func (p *provider) Refund(_ context.Context, key, id string) error {
	p.calls = append(p.calls, "refund "+id+" "+key)
	return p.err
}
func (p *provider) Payments(context.Context, string) ([]payment.ProviderPayment, error) {
	p.calls = append(p.calls, "payments")
	return p.holds, nil
}

func TestHandle(t *testing.T) {
	held := payment.Payment{OrderID: 7, PaymentID: "pay-1", State: payment.Authorized, Amount: 900, Currency: "EUR"}
	with := func(s payment.State) payment.Payment { p := held; p.State = s; return p }
	authorize := payment.Command{Kind: payment.Authorize, Key: "k", OrderID: 7, Amount: 900, Currency: "EUR", Card: "4242"}
	void := payment.Command{Kind: payment.Void, Key: "k", OrderID: 7}
	capture := payment.Command{Kind: payment.Capture, Key: "k", OrderID: 7}
	busy := fault.New(fault.Unavailable, "provider down")
	tests := []struct {
		name     string
		prev     payment.Payment
		exists   bool
		cmd      payment.Command
		provider *provider
		want     payment.Outcome
		calls    []string
		fails    bool
	}{
		{"authorize a new payment", payment.Payment{}, false, authorize, &provider{}, payment.Outcome{Next: held, Changed: true, OK: true}, []string{"authorize k"}, false},
		{"a declined card is an answer", payment.Payment{}, false, authorize, &provider{declined: true},
			payment.Outcome{Next: payment.Payment{OrderID: 7, PaymentID: "pay-1", State: payment.Declined, Amount: 900, Currency: "EUR", Reason: "card declined"}, Changed: true, Reason: "card declined"}, []string{"authorize k"}, false},
		{"authorize again: no second call", held, true, authorize, &provider{}, payment.Outcome{Next: held, OK: true}, nil, false},
		{"authorize after a void is refused", with(payment.Voided), true, authorize, &provider{}, payment.Outcome{Next: with(payment.Voided), Reason: "the payment was cancelled"}, nil, false},
		{"a provider fault is an error", payment.Payment{}, false, authorize, &provider{err: busy}, payment.Outcome{}, []string{"authorize k"}, true},
		{"void what is held", held, true, void, &provider{}, payment.Outcome{Next: with(payment.Voided), Changed: true, OK: true}, []string{"void pay-1"}, false},
		{"void what was taken refunds it", with(payment.Captured), true, void, &provider{}, payment.Outcome{Next: with(payment.Refunded), Changed: true, OK: true}, []string{"refund pay-1 k"}, false},
		{"void twice: one call", with(payment.Voided), true, void, &provider{}, payment.Outcome{Next: with(payment.Voided), OK: true}, nil, false},
		{"a void the provider refuses as voided already is done", held, true, void, &provider{voidErr: fault.New(fault.Conflict, "already voided"), holds: []payment.ProviderPayment{{ID: "pay-1", Status: "voided"}}},
			payment.Outcome{Next: with(payment.Voided), Changed: true, OK: true}, []string{"void pay-1", "payments"}, false},
		// A capture the provider made whose answer was lost: the saga gave
		// up on the step and voids; the provider refuses (it is captured),
		// and the money is refunded, not kept.
		{"a void the provider refuses as captured refunds it", held, true, void, &provider{voidErr: fault.New(fault.Conflict, "payment is captured"), holds: []payment.ProviderPayment{{ID: "pay-1", Status: "captured"}}},
			payment.Outcome{Next: with(payment.Refunded), Changed: true, OK: true}, []string{"void pay-1", "payments", "refund pay-1 k/pay-1"}, false},
		{"a void refused for a payment the provider does not list is tried again", held, true, void, &provider{voidErr: fault.New(fault.Conflict, "?")},
			payment.Outcome{}, []string{"void pay-1", "payments"}, true},
		{"void with nothing recorded undoes what the provider holds", payment.Payment{}, false, void,
			&provider{holds: []payment.ProviderPayment{{ID: "pay-9", Status: "authorized"}, {ID: "pay-8", Status: "captured"}, {ID: "pay-6", Status: "declined"}}},
			payment.Outcome{Next: payment.Payment{OrderID: 7, State: payment.Voided, Reason: "voided before it was recorded"}, Changed: true, OK: true},
			[]string{"payments", "void pay-9", "refund pay-8 k/pay-8"}, false},
		{"capture what is held", held, true, capture, &provider{}, payment.Outcome{Next: with(payment.Captured), Changed: true, OK: true}, []string{"capture pay-1"}, false},
		{"capture twice: one call", with(payment.Captured), true, capture, &provider{}, payment.Outcome{Next: with(payment.Captured), OK: true}, nil, false},
		{"capture after a void is refused", with(payment.Voided), true, capture, &provider{}, payment.Outcome{Next: with(payment.Voided), Reason: "nothing was authorized to capture"}, nil, false},
		{"capture with nothing recorded is refused", payment.Payment{}, false, capture, &provider{}, payment.Outcome{Reason: "nothing was authorized to capture"}, nil, false},
		{"a capture the provider refuses is an answer", held, true, capture, &provider{err: fault.New(fault.NotFound, "no such payment")}, payment.Outcome{Next: held, Reason: "the payment could not be captured"}, []string{"capture pay-1"}, false},
		{"a capture fault is an error", held, true, capture, &provider{err: busy}, payment.Outcome{}, []string{"capture pay-1"}, true},
	}
	for _, tt := range tests {
		got, err := payment.Handle(context.Background(), tt.provider, tt.prev, tt.exists, tt.cmd)
		if (err != nil) != tt.fails || (err != nil && !errors.Is(err, busy) && !fault.Is(err, fault.Unavailable)) {
			t.Errorf("%s: err %v, want failure %v", tt.name, err, tt.fails)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: outcome (-want +got):\n%s", tt.name, diff)
		}
		if !slices.Equal(tt.provider.calls, tt.calls) {
			t.Errorf("%s: provider calls %v, want %v", tt.name, tt.provider.calls, tt.calls)
		}
	}
}
