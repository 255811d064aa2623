package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/discoverytest"
	"github.com/junction-go/junction/internal/registry"
	"github.com/junction-go/junction/internal/registry/httpapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startRegistry serves a real registry on a loopback port.
func startRegistry(t *testing.T) *discovery.Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(httpapi.Handler(registry.New(nil), log))
	t.Cleanup(srv.Close)
	return discovery.NewClient(srv.URL, srv.Client())
}

func TestClientRegisterLookupDeregister(t *testing.T) {
	c := startRegistry(t)
	ctx := context.Background()
	in := discovery.Instance{ID: "order-1", Service: "order-service", Endpoints: map[string]string{"http": "127.0.0.1:9"}, Metadata: map[string]string{"pid": "42"}}
	if err := c.Register(ctx, in, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	v, err := c.Lookup(ctx, "order-service")
	if err != nil || len(v.Instances) != 1 || v.Instances[0].Metadata["pid"] != "42" {
		t.Fatalf("Lookup = %+v, %v; want order-1", v, err)
	}
	cat, err := c.Catalog(ctx)
	if err != nil || len(cat.Services) != 1 {
		t.Fatalf("Catalog = %+v, %v", cat, err)
	}
	if err := c.Deregister(ctx, "order-1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Lookup(ctx, "order-service"); len(v.Instances) != 0 {
		t.Errorf("Lookup after Deregister = %+v, want none", v)
	}
	if err := c.Register(ctx, discovery.Instance{ID: "bad id", Service: "x", Endpoints: map[string]string{"http": "a:1"}}, time.Second); err == nil {
		t.Error("Register of a malformed id succeeded")
	}
}

func TestKeepAliveDeregistersOnStop(t *testing.T) {
	c := startRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	in := discovery.Instance{ID: "u-1", Service: "user-service", Endpoints: map[string]string{"http": "127.0.0.1:9"}}
	go func() { defer close(done); c.KeepAlive(ctx, in, 3*time.Second, nil) }()

	r := discovery.NewResolver(c)
	defer r.Close()
	waitFor(t, func() bool { v, _ := r.View(context.Background(), "user-service"); return len(v.Instances) == 1 })
	cancel()
	<-done
	// The resolver's watch sees the instance go without polling.
	waitFor(t, func() bool { v, _ := r.View(context.Background(), "user-service"); return len(v.Instances) == 0 })
}

func TestResolverBalancesRoundRobin(t *testing.T) {
	c := startRegistry(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		_ = c.Register(ctx, discovery.Instance{ID: id, Service: "svc", Endpoints: map[string]string{"http": id + ":80"}}, 10*time.Second)
	}
	r := discovery.NewResolver(c)
	defer r.Close()
	counts := map[string]int{}
	for range 30 {
		addr, err := r.Pick(ctx, "svc", discovery.EndpointHTTP)
		if err != nil {
			t.Fatal(err)
		}
		counts[addr]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if counts[id+":80"] != 10 {
			t.Errorf("picks = %v, want 10 each", counts)
		}
	}
	if _, err := r.Pick(ctx, "nobody", discovery.EndpointHTTP); err == nil {
		t.Error("Pick of a service with no instance succeeded")
	}
}

// TestRegistryBackend: the registry passes the suite every discovery
// backend passes (HTTP and gRPC clients follow instances as they come and
// go).
func TestRegistryBackend(t *testing.T) {
	discoverytest.Run(t, func(t *testing.T) discoverytest.Backend {
		c := startRegistry(t)
		return discoverytest.Registered(c, c)
	})
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
