package order

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"

	"github.com/junction-go/junction/api/services"
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
// The limit follows the trend of those times, so an overload that lasts
// makes its own slow orders the baseline the trend is taken against. A
// second bound, on time, keeps admitted orders near the time they took the
// last time the shop was this busy without refusing: once the limit has
// been full, at most as many orders are in flight as the shop finishes in
// twice that time (Little's law: R = orders ended a second times twice the
// reference time), with room for bursts above it (R + 2√R, the square-root
// staffing rule: random arrivals spread the count in flight about its mean
// by about its square root, and a bound at the mean would refuse the
// bursts of a shop with room on average), never fewer than 8. The
// reference is the median of the mean times to a verdict of the last ten
// seconds that refused nothing and ended at least 70 % as many orders as
// the shop ends now (of the last minute's such seconds, or of the busiest
// one when none was that busy): not the slowest calm second, which may be
// a shop already past its capacity that had not yet refused, nor a quiet
// night's, which a shop this busy cannot match. Where none was that busy
// (a quiet shop straight into an overload: a sale opening), twice a quiet
// second's time is not a time the busy shop can keep, and a bound from it
// would leave it idle part of the time: the bound is then at least the
// adaptive limit the shop was first refused at in this overload, the
// orders in flight it ran with when it became full. The pace is the greater of
// the last second's and the median pace of those calm seconds: the last
// second's alone is what the bound let through, and a bound from it would
// fall with each burst refused. The bound holds while orders are refused;
// a second that refuses none lifts it, and so does one in which the shop
// finished less than half as many orders as in its busiest calm second
// (its orders wait on a dependency, not on its load, and a bound from that
// pace would starve it). A long overload keeps the calm seconds it began
// after: those a minute old are forgotten at the next calm second, not
// while the overload lasts.
//
// Room tells the gateway, on every answer, how many more orders it would
// take, so that it refuses the rest itself a hop sooner; RefusedElsewhere
// counts those it refused as refused here.
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

	// pace is the current second's measure; calm the mean times of the
	// last minute's seconds that refused nothing; bound, when above 0, the
	// most orders in flight the time bound allows.
	pace  pace
	calm  []calmSecond
	bound int
	// firstFull is the adaptive limit the shop was first refused at in the
	// current overload (see Admission): taken at the first refusal of each
	// second while no bound holds, so it is kept once the bound is set.
	firstFull int
	// ends is how many orders a second ended in the last second closed.
	ends float64

	refused atomic.Int64
}

// pace is one second's measure of the orders' ends.
type pace struct {
	start time.Time
	// ended are the orders whose saga ended; timed of them, took in all,
	// are those whose time from admission is known here.
	ended, timed int
	took         time.Duration
	// refused tells whether an order was refused; full whether the
	// adaptive limit refused it.
	refused, full bool
}

// calmSecond is the mean time to a verdict in a second that refused no
// order.
type calmSecond struct {
	at   time.Time
	mean time.Duration
	rate float64 // orders ended a second
}

// The time bound's measures.
const (
	paceWindow = time.Second
	calmFor    = time.Minute
	minBound   = 8
	// refSeconds are how many calm seconds the reference time is the
	// median of; refPace is the least share of the current pace they must
	// have ended.
	refSeconds = 10
	refPace    = 0.7
	// boundFactor is how many times their calm time admitted orders may
	// take under overload.
	boundFactor = 2
	// burstRoom is the room above the orders in flight Little's law
	// gives, in square roots of it (see Admission).
	burstRoom = 2
)

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
		pace:  pace{start: time.Now()},
	}
}

// Admit returns a permit for a new order, or false when the shop has as
// many orders in flight as it can finish in time.
func (a *Admission) Admit() (adaptivelimiter.Permit, bool) {
	a.mu.Lock()
	a.roll(time.Now())
	over := a.bound > 0 && a.limiter.Inflight() >= a.bound
	a.pace.refused = a.pace.refused || over
	a.mu.Unlock()
	if over {
		a.refused.Add(1)
		return nil, false
	}
	p, ok := a.limiter.TryAcquirePermit()
	if !ok {
		a.mu.Lock()
		if !a.pace.full && a.bound == 0 {
			a.firstFull = a.limiter.Limit()
		}
		a.pace.refused, a.pace.full = true, true
		a.mu.Unlock()
		a.refused.Add(1)
	}
	return p, ok
}

// Room is the admission's room: how many more orders Admit would take now,
// how many of those it took are still being placed (between Admit and
// Hold), and how many a second ended in the last second closed; what the
// gateway refuses new orders by before they cost a hop
// (services.RoomHeader).
func (a *Admission) Room() services.Room {
	a.mu.Lock()
	a.roll(time.Now())
	limit, inFlight := a.limiter.Limit(), a.limiter.Inflight()
	if a.bound > 0 {
		limit = min(limit, a.bound)
	}
	r := services.Room{Free: max(0, limit-inFlight), Placing: max(0, inFlight-len(a.held)), Ends: a.ends}
	a.mu.Unlock()
	return r
}

// RefusedElsewhere counts n new orders refused for this shop before they
// reached it, for want of the room Room reported: for the time bound they
// are refusals Admit made.
func (a *Admission) RefusedElsewhere(n int) {
	if n <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roll(time.Now())
	if a.bound == 0 {
		// No time bound holds: the adaptive limit was what was full.
		if !a.pace.full {
			a.firstFull = a.limiter.Limit()
		}
		a.pace.full = true
	}
	a.pace.refused = true
}

// ended counts an order's end in the current second, with its time from
// admission when took is above 0. a.mu is held.
func (a *Admission) ended(now time.Time, took time.Duration) {
	a.roll(now)
	a.pace.ended++
	if took > 0 {
		a.pace.timed++
		a.pace.took += took
	}
}

// roll closes the current second once it has passed and sets the time
// bound from it. a.mu is held.
func (a *Admission) roll(now time.Time) {
	elapsed := now.Sub(a.pace.start)
	if elapsed < paceWindow {
		return
	}
	w := a.pace
	a.pace = pace{start: now}
	a.ends = float64(w.ended) / elapsed.Seconds()
	if !w.refused {
		a.bound = 0 // nothing refused: the load fits
		if w.timed > 0 {
			a.calm = slices.DeleteFunc(a.calm, func(c calmSecond) bool { return now.Sub(c.at) > calmFor })
			a.calm = append(a.calm, calmSecond{at: now, mean: w.took / time.Duration(w.timed), rate: float64(w.ended) / elapsed.Seconds()})
		}
		return
	}
	if a.bound == 0 && !w.full {
		return // the bound is set only once the adaptive limit has been full
	}
	perSecond := float64(w.ended) / elapsed.Seconds()
	ref := a.reference(perSecond)
	if ref.mean == 0 || perSecond < ref.busiest/2 {
		// No calm second seen yet, or the shop finishes less than half
		// as many orders as it did: its orders wait on something else
		// than its own load (a dependency failing), and a bound from that
		// pace would starve it. The adaptive limit alone.
		a.bound = 0
		return
	}
	// R + 2√R on the greater of the two paces (see Admission).
	r := max(perSecond, ref.rate) * boundFactor * ref.mean.Seconds()
	bound := max(minBound, int(math.Ceil(r+burstRoom*math.Sqrt(r))))
	if ref.quiet {
		bound = max(bound, a.firstFull)
	}
	a.bound = bound
}

// calmReference is what the time bound is taken from: the median mean
// time and the median pace of the reference seconds, and the pace of the
// busiest calm second; quiet when no calm second was as busy as the shop
// is now, and the busiest stands in for them.
type calmReference struct {
	mean          time.Duration
	rate, busiest float64
	quiet         bool
}

// reference returns the calm seconds' reference at perSecond orders
// ended a second (see Admission). a.mu is held.
func (a *Admission) reference(perSecond float64) calmReference {
	var busiest calmSecond
	for _, c := range a.calm {
		if c.rate > busiest.rate {
			busiest = c
		}
	}
	var times []time.Duration
	var rates []float64
	for i := len(a.calm) - 1; i >= 0 && len(times) < refSeconds; i-- {
		if c := a.calm[i]; c.rate >= refPace*perSecond {
			times = append(times, c.mean)
			rates = append(rates, c.rate)
		}
	}
	if len(times) == 0 {
		return calmReference{mean: busiest.mean, rate: busiest.rate, busiest: busiest.rate, quiet: true}
	}
	slices.Sort(times)
	slices.Sort(rates)
	return calmReference{mean: times[len(times)/2], rate: rates[len(rates)/2], busiest: busiest.rate}
}

// Hold keeps order id's permit until its saga ends.
func (a *Admission) Hold(id int64, p adaptivelimiter.Permit) {
	a.mu.Lock()
	if _, ended := a.early[id]; ended {
		delete(a.early, id)
		a.ended(time.Now(), 0)
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
	now := time.Now()
	a.mu.Lock()
	h, ok := a.held[id]
	if ok {
		delete(a.held, id)
		a.ended(now, now.Sub(h.since))
	} else {
		a.early[id] = now
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
		if ok && done[id] {
			a.ended(time.Now(), 0) // ended elsewhere, a second ago or less
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
	// Bound is the time bound's most orders in flight, 0 when it is
	// lifted.
	Bound   int
	Refused int64
}

// Stats returns the current limit, the orders in flight, the time bound
// and the orders refused so far.
func (a *Admission) Stats() AdmissionStats {
	a.mu.Lock()
	bound := a.bound
	a.mu.Unlock()
	return AdmissionStats{Limit: a.limiter.Limit(), InFlight: a.limiter.Inflight(), Bound: bound, Refused: a.refused.Load()}
}
