// Package discoverytest is the suite every discovery backend passes: the
// registry, DNS and etcd. A backend's test opens it and says how an
// instance is made live and taken away; the suite checks that HTTP and gRPC
// clients balanced by a discovery.Resolver over the backend's Source reach
// every live instance and stop using one that left.
package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/grpcresolve"
)

// Backend is one discovery backend under test.
type Backend struct {
	Source discovery.Source
	// Add makes inst live (registers it, or publishes its records).
	Add func(t *testing.T, inst discovery.Instance)
	// Remove takes the instance with this id away.
	Remove func(t *testing.T, id string)
}

// Registered is the Backend of a Source whose instances are made live by
// a Registrar: Add keeps an instance alive (lease 5 s) until Remove or the
// end of the test.
func Registered(src discovery.Source, reg discovery.Registrar) Backend {
	var mu sync.Mutex
	stops := map[string]func(){}
	return Backend{
		Source: src,
		Add: func(t *testing.T, inst discovery.Instance) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				reg.KeepAlive(ctx, inst, 5*time.Second, func(err error) { t.Logf("keep alive %s: %v", inst.ID, err) })
			}()
			stop := sync.OnceFunc(func() { cancel(); <-done })
			mu.Lock()
			stops[inst.ID] = stop
			mu.Unlock()
			t.Cleanup(stop)
		},
		Remove: func(t *testing.T, id string) {
			mu.Lock()
			stop := stops[id]
			mu.Unlock()
			if stop == nil {
				t.Fatalf("remove %s: never added", id)
			}
			stop()
		},
	}
}

// Run runs the suite; open returns a fresh backend for each test, with
// no instance of any service.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("HTTPFollowsInstances", func(t *testing.T) { testHTTP(t, open(t)) })
	t.Run("GRPCFollowsInstances", func(t *testing.T) { testGRPC(t, open(t)) })
	t.Run("UnknownServiceHasNoInstances", func(t *testing.T) { testUnknown(t, open(t)) })
}

func testHTTP(t *testing.T, b Backend) {
	var names []string
	for _, id := range []string{"h1", "h2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, id) }))
		t.Cleanup(srv.Close)
		b.Add(t, discovery.Instance{ID: id, Service: "web", Endpoints: map[string]string{discovery.EndpointHTTP: srv.Listener.Addr().String()}})
		names = append(names, id)
	}
	r := discovery.NewResolver(b.Source)
	t.Cleanup(r.Close)
	client := &http.Client{Transport: &discovery.Transport{Resolver: r, Balancer: &discovery.Balancer{Resolver: r}}, Timeout: 5 * time.Second}
	seen := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			resp, err := client.Get("http://web/")
			if err != nil {
				got["error: "+err.Error()]++
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[string(body)]++
		}
		return got
	}
	WaitFor(t, "both instances answer", func() bool { got := seen(20); return got[names[0]] > 0 && got[names[1]] > 0 })
	b.Remove(t, names[0])
	WaitFor(t, "only h2 answers", func() bool { got := seen(10); return got[names[1]] == 10 })
}

func testGRPC(t *testing.T, b Backend) {
	var addrs []string
	for _, id := range []string{"g1", "g2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, health.NewServer())
		go func() { _ = s.Serve(ln) }()
		t.Cleanup(s.Stop)
		addrs = append(addrs, ln.Addr().String())
		b.Add(t, discovery.Instance{ID: id, Service: "rpc", Endpoints: map[string]string{discovery.EndpointGRPC: ln.Addr().String()}})
	}
	r := discovery.NewResolver(b.Source)
	t.Cleanup(r.Close)
	conn, err := grpc.NewClient(grpcresolve.Target("rpc"),
		grpc.WithResolvers(grpcresolve.NewBuilder(r)),
		grpc.WithDefaultServiceConfig(grpcresolve.ServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	seen := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var p peer.Peer
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
			cancel()
			if err != nil {
				got["error: "+err.Error()]++
				continue
			}
			got[p.Addr.String()]++
		}
		return got
	}
	WaitFor(t, "both instances answer", func() bool { got := seen(10); return got[addrs[0]] > 0 && got[addrs[1]] > 0 })
	b.Remove(t, "g1")
	WaitFor(t, "only g2 answers", func() bool { got := seen(10); return got[addrs[1]] == 10 })
}

func testUnknown(t *testing.T, b Backend) {
	r := discovery.NewResolver(b.Source)
	t.Cleanup(r.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := r.View(ctx, "nobody")
	if err != nil || len(v.Instances) != 0 {
		t.Fatalf("View(nobody) = %+v, %v; want no instance and no error", v, err)
	}
	if _, err := r.Pick(ctx, "nobody", discovery.EndpointHTTP); !errors.Is(err, discovery.ErrNoInstances) {
		t.Errorf("Pick(nobody) error = %v, want ErrNoInstances", err)
	}
}

// WaitFor polls cond until it holds, failing the test after 20 s with what.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("within 20 s: %s: not met", what))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CompareCalls benchmarks a call through Junction's client stack beside
// the same call made raw, in the same run: sub-benchmark "serial" (one
// caller, the two interleaved; the latency the stack adds) and
// "32-callers" (alternating rounds of 1,000 calls by 32 callers; the
// throughput it costs). Each reports both figures and junction/raw, the
// ratio of time per call.
func CompareCalls(b *testing.B, rawCall, stackCall func(context.Context) error) {
	for _, call := range []func(context.Context) error{rawCall, stackCall} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := call(ctx) // connections up before timing
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	// serial: one caller, the two kinds of call interleaved; the latency
	// each adds.
	b.Run("serial", func(b *testing.B) {
		ctx := context.Background()
		var rawNs, stackNs time.Duration
		for i := range b.N {
			call, sum := rawCall, &rawNs
			if i%2 == 1 {
				call, sum = stackCall, &stackNs
			}
			start := time.Now()
			if err := call(ctx); err != nil {
				b.Fatal(err)
			}
			*sum += time.Since(start)
		}
		rawN, stackN := (b.N+1)/2, b.N/2 // even calls raw, odd ones through the stack
		if stackN == 0 {
			return // one call: nothing to compare
		}
		r, s := float64(rawNs)/float64(rawN), float64(stackNs)/float64(stackN)
		b.ReportMetric(r, "raw-ns/call")
		b.ReportMetric(s, "junction-ns/call")
		b.ReportMetric(s/r, "junction/raw")
	})
	// 32-callers: throughput, in alternating rounds of 1,000 calls by 32
	// callers, each round all raw or all through the stack; the ratio is
	// the time per call through the stack over the raw time.
	b.Run("32-callers", func(b *testing.B) {
		ctx := context.Background()
		const round = 1000
		var rawTime, stackTime time.Duration
		var rawCalls, stackCalls int
		for done, k := 0, 0; done < b.N; k++ {
			n := min(round, b.N-done)
			call, sum, count := rawCall, &rawTime, &rawCalls
			if k%2 == 1 {
				call, sum, count = stackCall, &stackTime, &stackCalls
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range 32 {
				wg.Go(func() {
					for next.Add(1) <= int64(n) {
						if err := call(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			*sum += time.Since(start)
			*count += n
			done += n
		}
		if rawCalls == 0 || stackCalls == 0 {
			return // too few calls for both kinds (b.N ≤ one round)
		}
		r, s := float64(rawCalls)/rawTime.Seconds(), float64(stackCalls)/stackTime.Seconds()
		b.ReportMetric(r, "raw-calls/s")
		b.ReportMetric(s, "junction-calls/s")
		b.ReportMetric(r/s, "junction/raw")
	})
}
