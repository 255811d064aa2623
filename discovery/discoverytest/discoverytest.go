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
