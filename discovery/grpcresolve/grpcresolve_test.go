package grpcresolve_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/discoverytest"
	"github.com/junction-go/junction/discovery/grpcresolve"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/resilience"
)

// countingHealth answers Check after delay, with code when it is set
// (SERVING otherwise), and counts the calls.
type countingHealth struct {
	healthpb.UnimplementedHealthServer
	delay time.Duration
	code  codes.Code
	calls atomic.Int64
}

func (h *countingHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	if h.delay > 0 {
		time.Sleep(h.delay) // the instance is slow: that is what is measured
	}
	if h.code != codes.OK {
		return nil, status.Error(h.code, "failing on purpose")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// serve runs h on a loopback port and returns its address.
func serve(tb testing.TB, h healthpb.HealthServer) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, h)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(s.Stop)
	return ln.Addr().String()
}

// dial connects to service through discovery over src, balanced by P2C.
func dial(tb testing.TB, src discovery.Source, service string) *grpc.ClientConn {
	tb.Helper()
	r := discovery.NewResolver(src)
	tb.Cleanup(r.Close)
	conn, err := grpc.NewClient(grpcresolve.Target(service),
		grpc.WithResolvers(grpcresolve.NewBuilder(r)),
		grpc.WithDefaultServiceConfig(grpcresolve.ServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// TestP2CSendsLessToASlowInstance: with 16 callers, an instance that takes
// 20 ms a call gets far fewer calls than one that answers at once (round
// robin would give each half).
func TestP2CSendsLessToASlowInstance(t *testing.T) {
	fast, slow := &countingHealth{}, &countingHealth{delay: 20 * time.Millisecond}
	src := discovery.Static{
		{ID: "fast", Service: "svc", Endpoints: map[string]string{discovery.EndpointGRPC: serve(t, fast)}},
		{ID: "slow", Service: "svc", Endpoints: map[string]string{discovery.EndpointGRPC: serve(t, slow)}},
	}
	hc := healthpb.NewHealthClient(dial(t, src, "svc"))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			for range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
					failed.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	f, s := fast.calls.Load(), slow.calls.Load()
	t.Logf("fast instance %d calls, slow instance %d", f, s)
	if failed.Load() != 0 || f+s != 800 {
		t.Fatalf("%d calls failed, %d served; want 0 and 800", failed.Load(), f+s)
	}
	if f < 4*s {
		t.Errorf("fast instance got %d calls, slow %d; want the fast one at least 4x the slow", f, s)
	}
}

// BenchmarkGRPCClientStack is the cost of Junction's gRPC client stack per
// call — discovery (resolver over a Source), the P2C balancer, the
// resilience policy (retry with budget, breaker, bulkhead, timeout) and
// error classification — beside a raw grpc-go call to the same server, in
// the same run, calls interleaved so both see the same machine. Reported:
// ns per call of each and their ratio.
func BenchmarkGRPCClientStack(b *testing.B) {
	addr := serve(b, &countingHealth{})
	raw, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	rawClient := healthpb.NewHealthClient(raw)
	stackClient := healthpb.NewHealthClient(dial(b, discovery.Static{{ID: "a", Service: "svc", Endpoints: map[string]string{discovery.EndpointGRPC: addr}}}, "svc"))
	policy := resilience.New(resilience.Config{
		Name: "svc", Timeout: time.Second, MaxAttempts: 2, Backoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		RetryBudget: 0.2, BreakAfter: 5, BreakFor: 5 * time.Second, MaxConcurrent: 256,
	})
	req := &healthpb.HealthCheckRequest{}
	rawCall := func(ctx context.Context) error {
		_, err := rawClient.Check(ctx, req)
		return err
	}
	stackCall := func(ctx context.Context) error {
		return policy.Do(ctx, func(ctx context.Context) error {
			_, err := stackClient.Check(ctx, req)
			return faultgrpc.FromClient(ctx, "svc", err)
		})
	}
	discoverytest.CompareCalls(b, rawCall, stackCall)
}

// TestP2CEjectsAnInstanceThatKeepsFailing: an instance that answers every
// call UNAVAILABLE gets EjectAfter calls in a row at most, then none while
// ejected; one that answers NOT_FOUND (a business answer) is never ejected.
func TestP2CEjectsAnInstanceThatKeepsFailing(t *testing.T) {
	for _, tc := range []struct {
		code   codes.Code
		ejects bool
	}{{codes.Unavailable, true}, {codes.NotFound, false}} {
		t.Run(tc.code.String(), func(t *testing.T) {
			good, bad := &countingHealth{}, &countingHealth{code: tc.code}
			src := discovery.Static{
				{ID: "good", Service: "svc", Endpoints: map[string]string{discovery.EndpointGRPC: serve(t, good)}},
				{ID: "bad", Service: "svc", Endpoints: map[string]string{discovery.EndpointGRPC: serve(t, bad)}},
			}
			hc := healthpb.NewHealthClient(dial(t, src, "svc"))
			// Until both are connected every call goes to the one that is
			// (never all of them ejected): warm up until the good one has
			// answered, then count from there.
			deadline := time.Now().Add(10 * time.Second)
			for good.calls.Load() == 0 && time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, _ = hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
				cancel()
			}
			if good.calls.Load() == 0 {
				t.Fatal("the good instance got no call within 10s")
			}
			warm := bad.calls.Load()
			failed := 0
			for range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
					failed++
				}
				cancel()
			}
			got := bad.calls.Load() - warm
			t.Logf("%v: the failing instance got %d of 200 calls (and %d while the other connected)", tc.code, got, warm)
			if tc.ejects && (got > grpcresolve.EjectAfter || failed != int(got)) {
				t.Errorf("the UNAVAILABLE instance got %d of the 200 calls (%d failed), want at most %d before it is ejected", got, failed, grpcresolve.EjectAfter)
			}
			if !tc.ejects && got < 50 {
				t.Errorf("the NOT_FOUND instance got %d of 200 calls; business answers must not eject it", got)
			}
		})
	}
}
