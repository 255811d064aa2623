package order

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"

	"github.com/junction-go/junction/saga"
)

// Admission bounds how many orders are between their acceptance and their
// verdict at once, so that the orders a busy shop accepts are the ones it
// can finish in time and the rest are refused at once (503 with
// Retry-After) instead of all of them finishing late. The bound is not a
// number tuned to a machine: it is failsafe-go's adaptive concurrency
// limit, and what it measures is each order's time from its admission to
// its saga's end: when that time trends up against its baseline, the
// limit comes down; when it does not, the limit may grow.
//
// Only new orders are admitted this way. Everything an admitted order
// needs afterwards (its saga's steps and replies, its status reads, a
// cancellation) is not, so work already accepted goes before new work,
// and a refused order has cost nothing but its refusal.
//
// An order's permit is returned when this process's saga engine ends its
// saga (Ended). Where another replica ended it, Sweep finds it ended in the
// store; a permit older than maxHold is given back unmeasured.
type Admission struct {
	limiter adaptivelimiter.AdaptiveLimiter[any]

	mu   sync.Mutex
	held map[int64]holding
	// early are orders whose saga ended before their permit was held (a
	// saga can end before Place returns), with when.
	early map[int64]time.Time

	refused atomic.Int64
}

type holding struct {
	permit adaptivelimiter.Permit
	since  time.Time
}

// maxHold is the longest a permit is held without its saga's end seen.
const maxHold = time.Minute

// NewAdmission returns the admission of one order-service instance.
func NewAdmission() *Admission {
	return &Admission{
		limiter: adaptivelimiter.NewBuilder[any]().
			// At least 8 orders in flight whatever the trend, so a quiet
			// shop never refuses; at most 10,000.
			WithLimits(8, 10000, 20).
			Build(),
		held:  map[int64]holding{},
		early: map[int64]time.Time{},
	}
}

// Admit returns a permit for a new order, or false when the shop has as
// many orders in flight as it can finish in time.
func (a *Admission) Admit() (adaptivelimiter.Permit, bool) {
	p, ok := a.limiter.TryAcquirePermit()
	if !ok {
		a.refused.Add(1)
	}
	return p, ok
}

// Hold keeps order id's permit until its saga ends.
func (a *Admission) Hold(id int64, p adaptivelimiter.Permit) {
	a.mu.Lock()
	if _, ended := a.early[id]; ended {
		delete(a.early, id)
		a.mu.Unlock()
		p.Record()
		return
	}
	a.held[id] = holding{permit: p, since: time.Now()}
	a.mu.Unlock()
}

// Ended returns the permit of the order whose saga in is (a saga engine's
// Config.Ended); its time since admission is what the limit learns from.
func (a *Admission) Ended(in *saga.Instance) {
	if in.Saga != SagaPlaceOrder {
		return
	}
	id, err := SagaOrder(in)
	if err != nil {
		return
	}
	a.mu.Lock()
	h, ok := a.held[id]
	if ok {
		delete(a.held, id)
	} else {
		a.early[id] = time.Now()
	}
	a.mu.Unlock()
	if ok {
		h.permit.Record()
	}
}

// Sweep returns the permits of orders that ended elsewhere (settled
// reports, in one look at the store, which of ids have their verdict)
// and of those held longer than maxHold, and forgets early ends no
// permit came for.
func (a *Admission) Sweep(ctx context.Context, settled func(ctx context.Context, ids []int64) map[int64]bool) {
	now := time.Now()
	a.mu.Lock()
	var old []int64
	for id, h := range a.held {
		if now.Sub(h.since) > time.Second {
			old = append(old, id)
		}
	}
	for id, at := range a.early {
		if now.Sub(at) > time.Minute {
			delete(a.early, id)
		}
	}
	a.mu.Unlock()
	if len(old) == 0 {
		return
	}
	done := settled(ctx, old)
	for _, id := range old {
		a.mu.Lock()
		h, ok := a.held[id]
		stale := ok && now.Sub(h.since) > maxHold
		if ok && (done[id] || stale) {
			delete(a.held, id)
		}
		a.mu.Unlock()
		switch {
		case ok && done[id]:
			h.permit.Record()
		case stale:
			h.permit.Drop()
		}
	}
}

// AdmissionStats are the admission's figures.
type AdmissionStats struct {
	Limit, InFlight int
	Refused         int64
}

// Stats returns the current limit, the orders in flight and the orders
// refused so far.
func (a *Admission) Stats() AdmissionStats {
	return AdmissionStats{Limit: a.limiter.Limit(), InFlight: a.limiter.Inflight(), Refused: a.refused.Load()}
}
