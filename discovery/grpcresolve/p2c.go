package grpcresolve

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// P2C is the name of the power-of-two-choices balancer this package
// registers with grpc-go: of two ready connections drawn at random, each
// call takes the one with fewer calls in flight from this process, so a
// slow instance gets less work without anyone measuring its latency.
// Counts are kept per ClientConn. An
// instance whose calls fail EjectAfter times in a row (unavailable,
// internal, unknown or past the deadline; a business answer such as not
// found is no failure) is left out for EjectFor, unless every instance is.
// grpc-go's own connection management takes care of instances that cannot
// be reached (they are not ready, so never drawn).
const P2C = "junction_p2c"

// Ejection, as for HTTP (discovery.Balancer).
const (
	EjectAfter = 5
	EjectFor   = 10 * time.Second
)

// init registers the balancer by name, as grpc-go's own do, so a service
// config can name it. What it registers holds no state: each ClientConn
// gets a balancer with state of its own (p2cBalancer.Build).
func init() {
	balancer.Register(p2cBalancer{})
}

// p2cBalancer builds, for each ClientConn, a base balancer with its own
// picker builder, so counts of calls in flight and failures belong to
// one ClientConn and nothing is shared across the process.
type p2cBalancer struct{}

func (p2cBalancer) Name() string { return P2C }

func (p2cBalancer) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return base.NewBalancerBuilder(P2C, &p2cBuilder{addrs: map[string]*addrState{}}, base.Config{HealthCheck: true}).Build(cc, opts)
}

// addrState is what one ClientConn knows of one instance address; it
// outlives pickers (a new picker, when an instance came or went, keeps
// counting the calls still running and the failures so far).
type addrState struct {
	inFlight     atomic.Int64
	failures     atomic.Int32 // in a row
	ejectedUntil atomic.Int64 // unix nanoseconds
}

func (a *addrState) ejected(now int64) bool { return a.ejectedUntil.Load() > now }

// done records a call's outcome.
func (a *addrState) done(err error) {
	a.inFlight.Add(-1)
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded:
		if a.failures.Add(1) >= EjectAfter {
			a.failures.Store(0)
			a.ejectedUntil.Store(time.Now().Add(EjectFor).UnixNano())
		}
	default:
		a.failures.Store(0)
	}
}

type p2cBuilder struct {
	mu    sync.Mutex
	addrs map[string]*addrState
}

type p2cConn struct {
	sc    balancer.SubConn
	state *addrState
}

func (b *p2cBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	conns := make([]p2cConn, 0, len(info.ReadySCs))
	live := map[string]bool{}
	for sc, sci := range info.ReadySCs {
		addr := sci.Address.Addr
		live[addr] = true
		st, ok := b.addrs[addr]
		if !ok {
			st = &addrState{}
			b.addrs[addr] = st
		}
		conns = append(conns, p2cConn{sc: sc, state: st})
	}
	for addr, st := range b.addrs {
		if !live[addr] && st.inFlight.Load() == 0 && !st.ejected(time.Now().UnixNano()) {
			delete(b.addrs, addr)
		}
	}
	return &p2cPicker{conns: conns}
}

type p2cPicker struct{ conns []p2cConn }

func (p *p2cPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	c := p.choose()
	if c == nil {
		return balancer.PickResult{}, status.Error(codes.Unavailable, "no ready instance")
	}
	c.state.inFlight.Add(1)
	return balancer.PickResult{SubConn: c.sc, Done: func(d balancer.DoneInfo) { c.state.done(d.Err) }}, nil
}

// choose draws two distinct instances among those not ejected (among all
// when every one is) and takes the one with fewer calls in flight.
func (p *p2cPicker) choose() *p2cConn {
	now := time.Now().UnixNano()
	ejected := 0
	for i := range p.conns {
		if p.conns[i].state.ejected(now) {
			ejected++
		}
	}
	if ejected == 0 || ejected == len(p.conns) {
		return twoChoices(len(p.conns), func(i int) *p2cConn { return &p.conns[i] })
	}
	pool := make([]*p2cConn, 0, len(p.conns)-ejected)
	for i := range p.conns {
		if !p.conns[i].state.ejected(now) {
			pool = append(pool, &p.conns[i])
		}
	}
	return twoChoices(len(pool), func(i int) *p2cConn { return pool[i] })
}

// twoChoices draws two distinct of n and returns the one with fewer calls
// in flight.
func twoChoices(n int, at func(int) *p2cConn) *p2cConn {
	switch n {
	case 0:
		return nil
	case 1:
		return at(0)
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := at(i), at(j)
	if b.state.inFlight.Load() < a.state.inFlight.Load() {
		return b
	}
	return a
}
