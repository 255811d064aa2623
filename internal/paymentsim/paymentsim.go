// Package paymentsim is the payment provider: a small HTTP service standing
// in for a third-party card processor. It authorizes, captures, voids and
// refunds by idempotency key (a repeated key gets the first answer and has
// no second effect), counts every real effect per key and per order, and
// lets an operator set its latency, error rate, decline rate and an outage
// at run time. It keeps nothing on disk: a restart forgets everything.
package paymentsim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// DeclinedCard is a card number that is always declined.
const DeclinedCard = "4000000000000002"

// Faults is what an operator can set.
type Faults struct {
	// Latency is added to every call.
	Latency time.Duration `json:"-"`
	// LatencyMS is Latency on the wire.
	LatencyMS int64 `json:"latencyMs"`
	// ErrorRate is the share of calls answered 503; half of those fail
	// after the effect was applied (the answer is lost), as real
	// processors do.
	ErrorRate float64 `json:"errorRate"`
	// DeclineRate is the share of authorizations declined, chosen by the
	// idempotency key and Seed, so a retry gets the same answer.
	DeclineRate float64 `json:"declineRate"`
	// Outage answers every call 503 with no effect.
	Outage bool   `json:"outage"`
	Seed   uint64 `json:"seed"`
}

// Payment is one authorization and what happened to it.
type Payment struct {
	ID       string `json:"id"`
	OrderRef string `json:"orderRef"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// Status: declined, authorized, captured, voided, refunded.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Counts are the real effects, per order reference: the checker's view of
// "charged twice".
type Counts struct {
	Authorized int `json:"authorized"`
	Declined   int `json:"declined"`
	Captured   int `json:"captured"`
	Voided     int `json:"voided"`
	Refunded   int `json:"refunded"`
}

// Stats is what GET /v1/admin/stats answers.
type Stats struct {
	Calls  int64             `json:"calls"`
	Errors int64             `json:"errors"`
	Orders map[string]Counts `json:"orders"`
	// Effects counts real effects per idempotency key; above 1 is a bug.
	Effects map[string]int `json:"effects"`
}

// Provider is the simulated processor. It is safe for concurrent use.
type Provider struct {
	log *slog.Logger

	mu       sync.Mutex
	faults   Faults
	rng      *rand.Rand
	byKey    map[string]answer // idempotency key -> first answer
	payments map[string]*Payment
	stats    Stats
	next     int
}

type answer struct {
	status int
	body   Payment
}

// New returns a provider with no faults.
func New(log *slog.Logger) *Provider {
	return &Provider{log: log, rng: rand.New(rand.NewPCG(1, 2)), byKey: map[string]answer{}, payments: map[string]*Payment{},
		stats: Stats{Orders: map[string]Counts{}, Effects: map[string]int{}}}
}

// Handler serves the provider's API:
//
//	POST /v1/authorizations              {key, orderRef, amount, currency, card}
//	POST /v1/payments/{id}/capture       {key}
//	POST /v1/payments/{id}/void          {key}
//	POST /v1/payments/{id}/refund        {key}
//	GET  /v1/payments?orderRef=…         the payments of an order
//	GET  /v1/admin/stats
//	GET, PUT /v1/admin/faults            Faults
//	GET /healthz, /readyz
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/authorizations", p.authorize)
	mux.HandleFunc("POST /v1/payments/{id}/{action}", p.act)
	mux.HandleFunc("GET /v1/payments", p.find)
	mux.HandleFunc("GET /v1/admin/stats", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		rest.JSON(w, http.StatusOK, p.stats)
	})
	mux.HandleFunc("GET /v1/admin/faults", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		rest.JSON(w, http.StatusOK, p.faults)
	})
	mux.HandleFunc("PUT /v1/admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if err := rest.Decode(w, r, 4<<10, &f); err != nil {
			rest.Error(w, r, p.log, err)
			return
		}
		if err := p.SetFaults(f); err != nil {
			rest.Error(w, r, p.log, err)
			return
		}
		rest.JSON(w, http.StatusOK, f)
	})
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	return rest.Chain(mux, rest.RequestID, rest.Recover(p.log))
}

// SetFaults replaces the fault settings; rates outside 0..1 are
// fault.Invalid.
func (p *Provider) SetFaults(f Faults) error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.DeclineRate < 0 || f.DeclineRate > 1 || f.LatencyMS < 0 || f.LatencyMS > 60_000 {
		return fault.New(fault.Invalid, "rates are between 0 and 1, latencyMs between 0 and 60000")
	}
	f.Latency = time.Duration(f.LatencyMS) * time.Millisecond
	p.mu.Lock()
	p.faults = f
	p.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x5eed))
	p.mu.Unlock()
	p.log.Info("faults set", "latency", f.Latency, "error_rate", f.ErrorRate, "decline_rate", f.DeclineRate, "outage", f.Outage, "seed", f.Seed)
	return nil
}

type request struct {
	Key      string `json:"key"`
	OrderRef string `json:"orderRef"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Card     string `json:"card"`
}

var errInjected = errors.New("injected failure")

// before applies latency and outage and decides an injected error:
// fail (no effect) or lose (effect, then fail).
func (p *Provider) before(r *http.Request) (fail, lose bool, err error) {
	p.mu.Lock()
	f := p.faults
	p.stats.Calls++
	roll, roll2 := p.rng.Float64(), p.rng.Float64()
	p.mu.Unlock()
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return true, false, r.Context().Err()
		}
	}
	if f.Outage {
		return true, false, nil
	}
	if roll < f.ErrorRate {
		return roll2 >= 0.5, roll2 < 0.5, nil
	}
	return false, false, nil
}

func (p *Provider) unavailable(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.stats.Errors++
	p.mu.Unlock()
	rest.Error(w, r, p.log, fault.Wrap(fault.Unavailable, errInjected, "the processor is unavailable"))
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	var req request
	if err := rest.Decode(w, r, 4<<10, &req); err != nil {
		rest.Error(w, r, p.log, err)
		return
	}
	if req.Key == "" || len(req.Key) > 255 || req.OrderRef == "" || req.Amount <= 0 || req.Currency == "" {
		rest.Error(w, r, p.log, fault.New(fault.Invalid, "key, orderRef, a positive amount and currency are required"))
		return
	}
	p.once(w, r, req.Key, func() (answer, error) {
		p.next++
		pay := &Payment{ID: "pay_" + strconv.Itoa(p.next), OrderRef: req.OrderRef, Amount: req.Amount, Currency: req.Currency, Status: "authorized"}
		c := p.stats.Orders[req.OrderRef]
		if req.Card == DeclinedCard || p.declines(req.Key) {
			pay.Status, pay.Reason = "declined", "card declined"
			c.Declined++
		} else {
			c.Authorized++
		}
		p.stats.Orders[req.OrderRef] = c
		p.payments[pay.ID] = pay
		return answer{status: http.StatusCreated, body: *pay}, nil
	})
}

// once answers a call with idempotency key: after the injected latency
// and failures, the first call with a key runs effect (under the lock)
// and its answer is kept; a repeat gets that answer with no effect. An
// error from effect is answered and not kept.
func (p *Provider) once(w http.ResponseWriter, r *http.Request, key string, effect func() (answer, error)) {
	fail, lose, err := p.before(r)
	if err != nil || fail {
		p.unavailable(w, r)
		return
	}
	p.mu.Lock()
	a, seen := p.byKey[key]
	if !seen {
		if a, err = effect(); err != nil {
			p.mu.Unlock()
			rest.Error(w, r, p.log, err)
			return
		}
		p.byKey[key] = a
		p.stats.Effects[key]++
	}
	p.mu.Unlock()
	if lose {
		p.unavailable(w, r)
		return
	}
	rest.JSON(w, a.status, a.body)
}

// declines decides by key, so every retry of one authorization gets the
// same answer.
func (p *Provider) declines(key string) bool {
	if p.faults.DeclineRate <= 0 {
		return false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", p.faults.Seed, key)
	return float64(h.Sum64()%10000)/10000 < p.faults.DeclineRate
}

// find lists the payments of an order reference: how a client learns of
// an authorization whose answer it lost.
func (p *Provider) find(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("orderRef")
	if ref == "" {
		rest.Error(w, r, p.log, fault.New(fault.Invalid, "orderRef is required"))
		return
	}
	if fail, _, err := p.before(r); err != nil || fail {
		p.unavailable(w, r)
		return
	}
	p.mu.Lock()
	out := []Payment{}
	for _, pay := range p.payments {
		if pay.OrderRef == ref {
			out = append(out, *pay)
		}
	}
	p.mu.Unlock()
	rest.JSON(w, http.StatusOK, map[string]any{"items": out})
}

// transitions: action -> status it needs, status it makes, what it
// counts.
var transitions = map[string]struct {
	from, to string
	count    func(*Counts)
}{
	"capture": {"authorized", "captured", func(c *Counts) { c.Captured++ }},
	"void":    {"authorized", "voided", func(c *Counts) { c.Voided++ }},
	"refund":  {"captured", "refunded", func(c *Counts) { c.Refunded++ }},
}

func (p *Provider) act(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	tr, ok := transitions[action]
	if !ok {
		rest.Error(w, r, p.log, fault.New(fault.NotFound, "no action %q; capture, void or refund", action))
		return
	}
	var req request
	if err := rest.Decode(w, r, 4<<10, &req); err != nil {
		rest.Error(w, r, p.log, err)
		return
	}
	if req.Key == "" || len(req.Key) > 255 {
		rest.Error(w, r, p.log, fault.New(fault.Invalid, "key is required"))
		return
	}
	p.once(w, r, req.Key, func() (answer, error) {
		pay := p.payments[r.PathValue("id")]
		switch {
		case pay == nil:
			return answer{}, fault.New(fault.NotFound, "no payment %s", r.PathValue("id"))
		case pay.Status != tr.from:
			return answer{}, fault.New(fault.Conflict, "payment %s is %s; %s needs %s", pay.ID, pay.Status, action, tr.from)
		}
		pay.Status = tr.to
		c := p.stats.Orders[pay.OrderRef]
		tr.count(&c)
		p.stats.Orders[pay.OrderRef] = c
		return answer{status: http.StatusOK, body: *pay}, nil
	})
}
