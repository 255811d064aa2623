package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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
	c, _ := startRegistryURL(t)
	return c
}

func startRegistryURL(t *testing.T) (*discovery.Client, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(httpapi.Handler(registry.New(nil), log, nil))
	t.Cleanup(srv.Close)
	return discovery.NewClient(srv.URL, srv.Client()), srv.URL
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

// TestPrometheusServiceDiscovery: the registry answers Prometheus' HTTP SD
// format, one target group per live instance.
func TestPrometheusServiceDiscovery(t *testing.T) {
	c, base := startRegistryURL(t)
	ctx := context.Background()
	_ = c.Register(ctx, discovery.Instance{ID: "o-1", Service: "order-service", Endpoints: map[string]string{"http": "127.0.0.1:9001"}, Metadata: map[string]string{"version": "v1.2.3"}}, 10*time.Second)
	_ = c.Register(ctx, discovery.Instance{ID: "b-1", Service: "broker", Endpoints: map[string]string{"nats": "127.0.0.1:4999"}}, 10*time.Second)
	resp, err := http.Get(base + "/v1/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || len(groups) != 1 ||
		!slices.Equal(groups[0].Targets, []string{"127.0.0.1:9001"}) ||
		groups[0].Labels["__meta_junction_service"] != "order-service" ||
		groups[0].Labels["__meta_junction_instance"] != "o-1" ||
		groups[0].Labels["__meta_junction_version"] != "v1.2.3" {
		t.Errorf("GET /v1/prometheus = %s %+v; want one group for o-1 (the broker has no http endpoint)", resp.Header.Get("Content-Type"), groups)
	}
}

// TestWatchStream: a client of /v1/services/{name}/stream gets the view at
// once and again on every change, as Server-Sent Events.
func TestWatchStream(t *testing.T) {
	c, base := startRegistryURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/services/svc/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	events := make(chan discovery.View)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var v discovery.View
				if json.Unmarshal([]byte(data), &v) == nil {
					events <- v
				}
			}
		}
	}()
	next := func() discovery.View {
		t.Helper()
		select {
		case v := <-events:
			return v
		case <-ctx.Done():
			t.Fatal("no event within 10 s")
		}
		return discovery.View{}
	}
	if v := next(); len(v.Instances) != 0 {
		t.Fatalf("first event = %+v, want the empty view", v)
	}
	_ = c.Register(ctx, discovery.Instance{ID: "s-1", Service: "svc", Endpoints: map[string]string{"http": "127.0.0.1:9"}}, 10*time.Second)
	if v := next(); len(v.Instances) != 1 || v.Instances[0].ID != "s-1" {
		t.Fatalf("after register = %+v, want s-1", v)
	}
	_ = c.Deregister(ctx, "s-1")
	if v := next(); len(v.Instances) != 0 {
		t.Fatalf("after deregister = %+v, want none", v)
	}
}

// TestRestartedRegistryRecoversTheFleet: a registry that restarts (empty,
// a new epoch, same address) learns every instance again from their next
// heartbeats, and a resolver watching through the restart follows.
func TestRestartedRegistryRecoversTheFleet(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) *http.Server {
		srv := &http.Server{Handler: httpapi.Handler(registry.New(nil), log, nil)}
		go func() { _ = srv.Serve(ln) }()
		return srv
	}
	first := serve(ln)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	c := discovery.NewClient("http://"+addr, &http.Client{Transport: transport})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for _, id := range []string{"a-1", "a-2"} {
		go func() {
			c.KeepAlive(ctx, discovery.Instance{ID: id, Service: "svc", Endpoints: map[string]string{"http": "127.0.0.1:9"}}, 3*time.Second, nil)
			done <- struct{}{}
		}()
	}
	r := discovery.NewResolver(c)
	defer r.Close()
	var before discovery.View
	waitFor(t, func() bool { before, _ = r.View(context.Background(), "svc"); return len(before.Instances) == 2 })

	_ = first.Close() // the registry dies; its memory goes with it
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	second := serve(ln2)
	defer second.Close()
	restarted := time.Now()
	waitFor(t, func() bool {
		v, err := c.Lookup(context.Background(), "svc")
		return err == nil && len(v.Instances) == 2
	})
	t.Logf("fleet back in the restarted registry after %v (heartbeat every 1 s)", time.Since(restarted).Round(time.Millisecond))
	waitFor(t, func() bool {
		v, _ := r.View(context.Background(), "svc")
		return v.Epoch != before.Epoch && len(v.Instances) == 2
	})
	cancel()
	<-done
	<-done
}

func TestRegistrationsOnlyByTheirService(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The caller's identity, as the mTLS layer would give it.
	may := func(r *http.Request, service string) bool { return r.Header.Get("X-Test-Caller") == service }
	srv := httptest.NewServer(httpapi.Handler(registry.New(nil), log, may))
	t.Cleanup(srv.Close)
	as := func(caller string) *discovery.Client {
		return discovery.NewClient(srv.URL, &http.Client{Transport: callerTransport(caller)})
	}
	ctx := context.Background()
	users := discovery.Instance{ID: "user-service-1", Service: "user-service", Endpoints: map[string]string{"http": "127.0.0.1:9"}}
	if err := as("user-service").Register(ctx, users, 10*time.Second); err != nil {
		t.Fatalf("user-service registering its own instance: %v", err)
	}
	steal := users
	steal.Service = "gateway"
	for _, tc := range []struct {
		name   string
		caller string
		call   func(c *discovery.Client) error
	}{
		{"another service's instance", "gateway", func(c *discovery.Client) error {
			return c.Register(ctx, discovery.Instance{ID: "user-service-2", Service: "user-service", Endpoints: users.Endpoints}, 10*time.Second)
		}},
		{"replacing another service's id with its own service", "gateway", func(c *discovery.Client) error { return c.Register(ctx, steal, 10*time.Second) }},
		{"removing another service's instance", "gateway", func(c *discovery.Client) error { return c.Deregister(ctx, users.ID) }},
	} {
		if err := tc.call(as(tc.caller)); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s as %s: err = %v, want 403", tc.name, tc.caller, err)
		}
	}
	v, err := as("gateway").Lookup(ctx, "user-service")
	if err != nil || len(v.Instances) != 1 || v.Instances[0].ID != users.ID {
		t.Fatalf("Lookup after the refused calls = %+v, %v; want user-service-1 alone", v, err)
	}
	if err := as("user-service").Deregister(ctx, users.ID); err != nil {
		t.Errorf("user-service removing its own instance: %v", err)
	}
}

type callerTransport string

func (c callerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Caller", string(c))
	return http.DefaultTransport.RoundTrip(r)
}
