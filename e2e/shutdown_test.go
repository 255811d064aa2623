package e2e

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown is RES-GRACEFUL-SHUTDOWN: orders at 20/s while the
// gateway and then order-service are stopped with SIGTERM (a graceful
// stop; the supervisor starts them again), then both killed with SIGKILL.
//
// Expected: under SIGTERM the gateway loses nothing (`up` holds its
// listening socket, so new connections wait for the restarted gateway and
// the stopping one finishes what it has); order-service finishes its
// requests in flight, and while it is away the gateway answers 503 with
// Retry-After, never a broken connection or a 502/504; under SIGKILL,
// clients see errors and retry with their idempotency key, and the saga
// invariants hold anyway. Drain times are reported.
func TestGracefulShutdown(t *testing.T) {
	seed := sagaSeed(t)
	s := startShop(t, []string{fmt.Sprintf("JUNCTION_SEED=%d", seed)}, nil)
	loaded := make(chan []*attempt, 1)
	go func() { loaded <- s.load(sagaOrders(500), 20, mixed(rand.New(rand.NewPCG(seed, 9))), anyCard, nil) }()

	var windows []window
	signal := func(name, service string, sig syscall.Signal) window {
		t.Helper()
		pid := s.pid(service)
		w := window{name: name, from: time.Now()}
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, service+" back after "+name, func() error {
			if p := s.pid(service); p == 0 || p == pid {
				return fmt.Errorf("not restarted yet")
			}
			return nil
		})
		w.to = time.Now()
		windows = append(windows, w)
		time.Sleep(3 * time.Second) // steady load between faults: the schedule
		return w
	}
	time.Sleep(3 * time.Second)
	gwTerm := signal("gateway SIGTERM", "gateway", syscall.SIGTERM)
	orderTerm := signal("order-service SIGTERM", "order-service", syscall.SIGTERM)
	gwKill := signal("gateway SIGKILL", "gateway", syscall.SIGKILL)
	orderKill := signal("order-service SIGKILL", "order-service", syscall.SIGKILL)
	as := <-loaded
	rep, _ := s.check(as, seed, map[string]int{"gateway": 1, "order-service": 1})

	// What clients saw, by window.
	seen := tallyFailures(as, windows, 3*time.Second, func(w string, f failure) {
		switch {
		case w == gwTerm.name:
			t.Errorf("a client saw %d (transport error when 0) while the gateway stopped gracefully; want nothing", f.status)
		case w == orderTerm.name && (f.status != 503 || f.retryAfter == ""):
			t.Errorf("a client saw %d (Retry-After %q) while order-service stopped gracefully; want only 503 with Retry-After", f.status, f.retryAfter)
		case w == "":
			t.Errorf("a client saw %d at %v, outside any fault window", f.status, f.at.Format(time.RFC3339Nano))
		}
	})
	t.Logf("RES-GRACEFUL-SHUTDOWN: %d orders, %d completed, %d rejected, 0 lost (check passed: %v); client failures by window (0 = broken connection): %v",
		rep.Orders, rep.Completed, rep.Rejected, !t.Failed(), seen)
	for _, w := range []window{gwTerm, orderTerm, gwKill, orderKill} {
		t.Logf("%s: back in %v", w.name, w.to.Sub(w.from).Round(time.Millisecond))
	}
	for _, id := range []string{"gateway-1", "order-service-1"} {
		if d, ok := drainTime(s.sys, id); ok {
			t.Logf("%s drained in %v (stopping to stopped)", id, d.Round(time.Millisecond))
		} else {
			t.Errorf("no stopping/stopped pair in %s's log: did it stop gracefully?", id)
		}
	}
}

// drainTime is the time between the first "stopping" and the next
// "stopped" record of instance id's log.
func drainTime(sys *system, id string) (time.Duration, bool) {
	var stopping time.Time
	for _, rec := range sys.instanceLog(id) {
		switch {
		case rec.Msg == "stopping" && stopping.IsZero():
			stopping = rec.Time
		case rec.Msg == "stopped" && !stopping.IsZero():
			return rec.Time.Sub(stopping), true
		}
	}
	return 0, false
}
