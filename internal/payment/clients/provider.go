// Package clients holds payment-service's client of the payment provider.
package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/payment"
	"github.com/junction-go/junction/resilience"
)

// ProviderPolicy protects every call to the payment provider. Every call
// carries an idempotency key, so every call may be retried.
//
//	timeout   1 s per attempt, within the command's own deadline
//	retry     3 attempts, 100 ms doubling to 1 s with jitter, at most 20% of calls in flight
//	          (worst case 3.4 s: it fits a saga step's 5 s, see docs/architecture.md)
//	breaker   open after 5 faults in a row, for 5 s; closed after 2 probes succeed
//	bulkhead  32 calls at once
//	fallback  none here: the command fails, the bus redelivers it until
//	          the step's deadline, and the saga's next attempt (or its
//	          compensation, a provider outage) takes it from there
func ProviderPolicy(log *slog.Logger) resilience.Config {
	return resilience.Config{
		Name:        "payment-provider",
		Timeout:     time.Second,
		MaxAttempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, RetryBudget: 0.2,
		BreakAfter: 5, BreakFor: 5 * time.Second,
		MaxConcurrent: 32,
		Log:           log,
	}
}

// Provider calls the payment provider's HTTP API. It is safe for
// concurrent use.
type Provider struct {
	base   string
	client *http.Client
	policy *resilience.Policy
}

var _ payment.Provider = (*Provider)(nil)

// NewProvider returns a client of the provider at base (e.g.
// "http://payment-provider" with a discovery transport) under policy.
func NewProvider(base string, client *http.Client, policy *resilience.Policy) *Provider {
	return &Provider{base: base, client: client, policy: policy}
}

// Policy returns the policy, for its counts and breaker state.
func (p *Provider) Policy() *resilience.Policy { return p.policy }

type answer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func (p *Provider) Authorize(ctx context.Context, key, orderRef string, amount int64, currency, card string) (payment.Authorization, error) {
	var a answer
	err := p.call(ctx, http.MethodPost, "/v1/authorizations", map[string]any{"key": key, "orderRef": orderRef, "amount": amount, "currency": currency, "card": card}, &a)
	if err != nil {
		return payment.Authorization{}, err
	}
	return payment.Authorization{PaymentID: a.ID, Declined: a.Status == "declined", Reason: a.Reason}, nil
}

func (p *Provider) Capture(ctx context.Context, key, id string) error {
	return p.act(ctx, key, id, "capture")
}
func (p *Provider) Void(ctx context.Context, key, id string) error {
	return p.act(ctx, key, id, "void")
}
func (p *Provider) Refund(ctx context.Context, key, id string) error {
	return p.act(ctx, key, id, "refund")
}

func (p *Provider) Payments(ctx context.Context, orderRef string) ([]payment.ProviderPayment, error) {
	var out struct {
		Items []answer `json:"items"`
	}
	if err := p.call(ctx, http.MethodGet, "/v1/payments?orderRef="+url.QueryEscape(orderRef), nil, &out); err != nil {
		return nil, err
	}
	ps := make([]payment.ProviderPayment, 0, len(out.Items))
	for _, a := range out.Items {
		ps = append(ps, payment.ProviderPayment{ID: a.ID, Status: a.Status})
	}
	return ps, nil
}

func (p *Provider) act(ctx context.Context, key, id, action string) error {
	return p.call(ctx, http.MethodPost, "/v1/payments/"+url.PathEscape(id)+"/"+action, map[string]any{"key": key}, nil)
}

func (p *Provider) call(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	return p.policy.Do(ctx, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, method, p.base+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := p.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return fault.Wrap(fault.Timeout, err, "payment provider timed out")
			}
			return fault.Wrap(fault.Unavailable, err, "payment provider unreachable")
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		switch {
		case resp.StatusCode < 300:
			if out != nil {
				if err := json.Unmarshal(data, out); err != nil {
					return fmt.Errorf("payment provider answer: %w", err)
				}
			}
			return nil
		case resp.StatusCode == http.StatusConflict:
			return fault.New(fault.Conflict, "payment provider: %s", detail(data))
		case resp.StatusCode == http.StatusNotFound:
			return fault.New(fault.NotFound, "payment provider: %s", detail(data))
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			return fault.New(fault.Unavailable, "payment provider answered %d", resp.StatusCode)
		default:
			return fmt.Errorf("payment provider refused the request (%d): %s", resp.StatusCode, detail(data))
		}
	})
}

func detail(problem []byte) string {
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(problem, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	return string(problem)
}
