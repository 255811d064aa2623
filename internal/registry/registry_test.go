package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/registry"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func inst(id, svc, addr string) discovery.Instance {
	return discovery.Instance{ID: id, Service: svc, Endpoints: map[string]string{"http": addr}}
}

func TestLeaseLapsesWithoutHeartbeat(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := registry.New(clk.now)
	a, b := inst("a", "order-service", "127.0.0.1:1"), inst("b", "order-service", "127.0.0.1:2")
	for _, i := range []discovery.Instance{a, b} {
		if err := r.Register(discovery.Registration{Instance: i, TTLSeconds: 10}); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(6 * time.Second)
	_ = r.Register(discovery.Registration{Instance: a, TTLSeconds: 10}) // a renews, b does not
	clk.add(6 * time.Second)
	if got := r.Lookup("order-service").Instances; !cmp.Equal(got, []discovery.Instance{a}) {
		t.Errorf("Lookup after b's lease lapsed = %v, want only a", got)
	}
	if n := r.Expire(); n != 1 {
		t.Errorf("Expire() = %d, want 1", n)
	}
	r.Deregister("a")
	if got := r.Lookup("order-service").Instances; len(got) != 0 {
		t.Errorf("Lookup after deregister = %v, want none", got)
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	r := registry.New(nil)
	tests := []discovery.Registration{
		{Instance: inst("", "svc", "a:1")},
		{Instance: inst("has space", "svc", "a:1")},
		{Instance: inst("a", "Upper", "a:1")},
		{Instance: discovery.Instance{ID: "a", Service: "svc"}},
		{Instance: inst("a", "svc", "a:1"), TTLSeconds: 100000},
		{Instance: inst("a", "svc", "")},
	}
	for _, reg := range tests {
		if err := r.Register(reg); !fault.Is(err, fault.Invalid) {
			t.Errorf("Register(%+v) = %v, want invalid", reg, err)
		}
	}
}

func TestWatchWakesOnChangeOnly(t *testing.T) {
	r := registry.New(nil)
	v0 := r.Lookup("svc")
	got := make(chan discovery.View, 1)
	go func() { got <- r.Watch(context.Background(), "svc", v0.Epoch, v0.Revision) }()

	// A change to another service does not wake the watcher.
	_ = r.Register(discovery.Registration{Instance: inst("x", "other", "a:1")})
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", "a:1")})
	v := <-got
	if v.Revision == v0.Revision || len(v.Instances) != 1 || v.Instances[0].ID != "a" {
		t.Errorf("Watch = %+v, want the view with a", v)
	}
	// A renewal with the same details is no change.
	rev := v.Revision
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", "a:1")})
	if now := r.Lookup("svc").Revision; now != rev {
		t.Errorf("revision after a plain renewal = %d, want %d", now, rev)
	}
	// A restart on a new port is.
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", "a:2")})
	if now := r.Lookup("svc"); now.Revision == rev || now.Instances[0].Endpoints["http"] != "a:2" {
		t.Errorf("view after re-registering on a new port = %+v", now)
	}
}

func TestWatchReturnsAtOnceForAnotherEpoch(t *testing.T) {
	r := registry.New(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v := r.Watch(ctx, "svc", "an-old-epoch", 99)
	if ctx.Err() != nil || v.Epoch == "an-old-epoch" {
		t.Errorf("Watch with a stale epoch = %+v (ctx %v), want the current view at once", v, ctx.Err())
	}
}

func TestProbesTakeOutAnUnhealthyInstanceAndBringItBack(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	r := registry.New(nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", addr), TTLSeconds: 60})
	check := registry.HTTPCheck(discovery.Clients{Plain: srv.Client()})
	ctx := context.Background()

	if n := r.ProbeAll(ctx, check, time.Second, 2); n != 0 || len(r.Lookup("svc").Instances) != 1 {
		t.Fatalf("a ready instance: changed %d, listed %d; want 0 and 1", n, len(r.Lookup("svc").Instances))
	}
	ready.Store(false)
	r.ProbeAll(ctx, check, time.Second, 2)
	if len(r.Lookup("svc").Instances) != 1 {
		t.Error("taken out after one failed probe; want two")
	}
	rev := r.Lookup("svc").Revision
	r.ProbeAll(ctx, check, time.Second, 2)
	if v := r.Lookup("svc"); len(v.Instances) != 0 || v.Revision == rev {
		t.Errorf("after two failed probes: %d listed (revision %d→%d); want none and a change watchers see", len(v.Instances), rev, v.Revision)
	}
	// A heartbeat does not put it back; only a passing probe does.
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", addr), TTLSeconds: 60})
	if len(r.Lookup("svc").Instances) != 0 {
		t.Error("a heartbeat put an unready instance back")
	}
	ready.Store(true)
	r.ProbeAll(ctx, check, time.Second, 2)
	if len(r.Lookup("svc").Instances) != 1 {
		t.Error("not back after a passing probe")
	}
}

func TestProbeOfAGoneAddressFails(t *testing.T) {
	r := registry.New(nil)
	_ = r.Register(discovery.Registration{Instance: inst("a", "svc", "127.0.0.1:1"), TTLSeconds: 60})
	for range 2 {
		r.ProbeAll(context.Background(), registry.HTTPCheck(discovery.Clients{Plain: &http.Client{}}), 500*time.Millisecond, 2)
	}
	if len(r.Lookup("svc").Instances) != 0 {
		t.Error("an instance nobody answers for is still listed")
	}
}
