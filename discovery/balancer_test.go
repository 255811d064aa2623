package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/junction-go/junction/discovery"
)

// views is a hand-written fake of the resolver: a fixed set of instances.
type views []string

func (v views) View(_ context.Context, service string) (discovery.View, error) {
	out := discovery.View{Service: service}
	for _, a := range v {
		out.Instances = append(out.Instances, discovery.Instance{ID: a, Service: service, Endpoints: map[string]string{discovery.EndpointHTTP: a}})
	}
	return out, nil
}

func TestPowerOfTwoChoicesAvoidsTheBusyInstance(t *testing.T) {
	b := &discovery.Balancer{Resolver: views{"a", "b"}}
	ctx := context.Background()
	// Hold ten calls on a (skipping b makes the picks land there).
	for range 10 {
		if addr, _, err := b.Pick(ctx, "svc", discovery.EndpointHTTP, func(a string) bool { return a == "b" }); err != nil || addr != "a" {
			t.Fatalf("Pick skipping b = %s, %v", addr, err)
		}
	}
	got := map[string]int{}
	for range 200 {
		addr, done, err := b.Pick(ctx, "svc", discovery.EndpointHTTP, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[addr]++
		done(true)
	}
	if got["a"] != 0 {
		t.Errorf("picks with a busy = %v, want every one on b", got)
	}
}

func TestAFailingInstanceIsEjectedThenTakenBack(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &discovery.Balancer{Resolver: views{"a", "b", "c"}, EjectAfter: 3, EjectFor: 10 * time.Second, Now: func() time.Time { return now }}
	ctx := context.Background()
	pick := func() string {
		addr, done, err := b.Pick(ctx, "svc", discovery.EndpointHTTP, nil)
		if err != nil {
			t.Fatal(err)
		}
		done(addr != "b") // b fails every call
		return addr
	}
	for range 100 {
		pick()
	}
	if !b.Stats()["b"].Ejected {
		t.Fatalf("b after failing = %+v, want ejected", b.Stats()["b"])
	}
	for range 100 {
		if a := pick(); a == "b" {
			t.Fatal("an ejected instance was picked")
		}
	}
	now = now.Add(11 * time.Second)
	seen := false
	for range 100 {
		seen = seen || pick() == "b"
	}
	if !seen {
		t.Error("b never came back after its ejection ended")
	}
}

func TestEveryInstanceEjectedStillServesAndSkipIsHonoured(t *testing.T) {
	b := &discovery.Balancer{Resolver: views{"a", "b"}, EjectAfter: 1}
	ctx := context.Background()
	for range 20 {
		_, done, _ := b.Pick(ctx, "svc", discovery.EndpointHTTP, nil)
		done(false)
	}
	if _, done, err := b.Pick(ctx, "svc", discovery.EndpointHTTP, nil); err != nil {
		t.Errorf("with every instance ejected: %v, want one picked anyway", err)
	} else {
		done(true)
	}
	for range 20 {
		addr, done, _ := b.Pick(ctx, "svc", discovery.EndpointHTTP, func(a string) bool { return a == "a" })
		done(true)
		if addr == "a" {
			t.Fatal("picked a skipped address while another was there")
		}
	}
	if _, _, err := (&discovery.Balancer{Resolver: views{}}).Pick(ctx, "svc", discovery.EndpointHTTP, nil); !errors.Is(err, discovery.ErrNoInstances) {
		t.Errorf("no instances: %v, want ErrNoInstances", err)
	}
}
