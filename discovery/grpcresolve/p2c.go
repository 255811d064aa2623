package grpcresolve

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// P2C is the name of the power-of-two-choices balancer this package
// registers with grpc-go: of two ready connections drawn at random, each
// call takes the one with fewer calls in flight from this client, so a
// slow instance gets less work without anyone measuring its latency.
// grpc-go's own connection management takes care of instances that cannot
// be reached (they are not ready, so never drawn).
const P2C = "junction_p2c"

func init() {
	balancer.Register(base.NewBalancerBuilder(P2C, &p2cBuilder{inFlight: map[string]*atomic.Int64{}}, base.Config{HealthCheck: true}))
}

type p2cBuilder struct {
	// inFlight per address outlives pickers: a new picker (an instance
	// came or went) keeps counting the calls still running.
	mu       sync.Mutex
	inFlight map[string]*atomic.Int64
}

type p2cConn struct {
	sc       balancer.SubConn
	inFlight *atomic.Int64
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
		n, ok := b.inFlight[addr]
		if !ok {
			n = new(atomic.Int64)
			b.inFlight[addr] = n
		}
		conns = append(conns, p2cConn{sc: sc, inFlight: n})
	}
	for addr, n := range b.inFlight {
		if !live[addr] && n.Load() == 0 {
			delete(b.inFlight, addr)
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
	c.inFlight.Add(1)
	return balancer.PickResult{SubConn: c.sc, Done: func(balancer.DoneInfo) { c.inFlight.Add(-1) }}, nil
}

func (p *p2cPicker) choose() *p2cConn {
	switch n := len(p.conns); n {
	case 0:
		return nil
	case 1:
		return &p.conns[0]
	default:
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := &p.conns[i], &p.conns[j]
		if b.inFlight.Load() < a.inFlight.Load() {
			return b
		}
		return a
	}
}
