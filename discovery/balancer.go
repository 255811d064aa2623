package discovery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Balancer picks an instance of a service for each call by the power of
// two choices: of two live instances drawn at random it takes the one with
// fewer calls in flight from this process, so a slow instance gets less
// work without anyone measuring its latency. An instance whose calls fail
// EjectAfter times in a row is left out for EjectFor (outlier ejection),
// unless every instance is out, when all are used again rather than none.
// It is safe for concurrent use.
type Balancer struct {
	// Resolver gives the live instances (a *Resolver).
	Resolver interface {
		View(ctx context.Context, service string) (View, error)
	}
	// EjectAfter consecutive failures eject an instance; 5 when zero.
	EjectAfter int
	// EjectFor is how long an ejected instance is left out; 10 s when zero.
	EjectFor time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu    sync.Mutex
	addrs map[string]*load
}

type load struct {
	inFlight     int
	failures     int // in a row
	ejectedUntil time.Time
}

// Ejection is what Stats reports of one instance address.
type Ejection struct {
	InFlight int
	Failures int
	Ejected  bool
}

func (b *Balancer) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Pick returns the address of endpoint on an instance of service, skipping
// addresses skip reports true for when there is another. Call done with
// the call's outcome (ok=false for a fault of the instance: unreachable,
// 5xx, timeout; a business answer is ok) exactly once. The error wraps
// ErrNoInstances when there is no live instance.
func (b *Balancer) Pick(ctx context.Context, service, endpoint string, skip func(addr string) bool) (addr string, done func(ok bool), err error) {
	v, err := b.Resolver.View(ctx, service)
	if err != nil {
		return "", nil, err
	}
	var all []string
	for _, in := range v.Instances {
		if a := in.Endpoints[endpoint]; a != "" {
			all = append(all, a)
		}
	}
	if len(all) == 0 {
		return "", nil, fmt.Errorf("resolve %s (%s endpoint): %w", service, endpoint, ErrNoInstances)
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addrs == nil {
		b.addrs = map[string]*load{}
	}
	if len(b.addrs) > 4096 { // instances come and go on new ports
		for a, l := range b.addrs {
			if l.inFlight == 0 && !now.Before(l.ejectedUntil) {
				delete(b.addrs, a)
			}
		}
	}
	// Candidates: not skipped and not ejected; failing that, not skipped;
	// failing that, everything.
	var healthy, fresh []string
	for _, a := range all {
		if skip != nil && skip(a) {
			continue
		}
		fresh = append(fresh, a)
		if l := b.addrs[a]; l == nil || !now.Before(l.ejectedUntil) {
			healthy = append(healthy, a)
		}
	}
	cands := healthy
	if len(cands) == 0 {
		cands = fresh
	}
	if len(cands) == 0 {
		cands = all
	}
	addr = cands[rand.IntN(len(cands))]
	if len(cands) > 1 {
		other := cands[rand.IntN(len(cands)-1)]
		if other == addr {
			other = cands[len(cands)-1]
		}
		if b.get(other).inFlight < b.get(addr).inFlight {
			addr = other
		}
	}
	l := b.get(addr)
	l.inFlight++
	var once sync.Once
	return addr, func(ok bool) { once.Do(func() { b.finish(addr, ok) }) }, nil
}

func (b *Balancer) get(addr string) *load {
	l := b.addrs[addr]
	if l == nil {
		l = &load{}
		b.addrs[addr] = l
	}
	return l
}

func (b *Balancer) finish(addr string, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.get(addr)
	l.inFlight--
	if ok {
		l.failures = 0
		return
	}
	l.failures++
	after, period := b.EjectAfter, b.EjectFor
	if after <= 0 {
		after = 5
	}
	if period <= 0 {
		period = 10 * time.Second
	}
	if l.failures >= after {
		l.ejectedUntil = b.now().Add(period)
		l.failures = 0
	}
}

// Stats returns what the balancer knows of each address it has used.
func (b *Balancer) Stats() map[string]Ejection {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Ejection, len(b.addrs))
	for a, l := range b.addrs {
		out[a] = Ejection{InFlight: l.inFlight, Failures: l.failures, Ejected: now.Before(l.ejectedUntil)}
	}
	return out
}
