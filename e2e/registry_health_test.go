package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/junction-go/junction/discovery"
)

// TestRegistryHealth is RES-REGISTRY-HEALTH: two inventory-service
// instances behind fault links, 100 catalogue reads/s through the gateway
// (GET /api/products/{sku}: no fallback, every read reaches an instance),
// while, one after the other:
//
//	not ready: instance 1's broker link is a blackhole: its readiness
//	           fails, the registry takes it out, it is not restarted;
//	paused:    instance 2 is stopped (SIGSTOP) for 2 s, then resumed;
//	killed:    instance 1 is killed (SIGKILL); the supervisor restarts it.
//
// Expected: each leaves the lookups within its lease (the registry's
// probes, or the supervisor at once for a death), and gets no request
// from the gateway a second after it left (the gateway's watch) until it
// is back; the not-ready instance keeps its process; every failed read
// falls inside a fault window (counted).
func TestRegistryHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system; skipped with -short")
	}
	sys := startSystem(t, t.TempDir(), "--replicas", "inventory-service=2", "--fault-links")
	reg := sys.registry(t)
	links := toxiclient.NewClient(sys.Links)
	listed := func() map[string]discovery.Instance {
		v, _ := reg.Lookup(context.Background(), "inventory-service")
		m := map[string]discovery.Instance{}
		for _, in := range v.Instances {
			m[in.ID] = in
		}
		return m
	}
	if n := len(listed()); n != 2 {
		t.Fatalf("inventory-service instances = %d, want 2", n)
	}
	pid := func(id string) int {
		p, _ := strconv.Atoi(listed()[id].Metadata["pid"])
		return p
	}

	// 100 reads/s, open loop.
	type read struct {
		at     time.Time
		status int
	}
	var mu sync.Mutex
	var reads []read
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Go(func() {
				at := time.Now()
				status := 0
				if resp, err := hc.Get(sys.Gateway + "/api/products/" + []string{"JX-MUG", "JX-TEE-M", "JX-PIN"}[i%3]); err == nil {
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				reads = append(reads, read{at, status})
				mu.Unlock()
			})
		}
	})

	var windows []window
	// out records when id left the lookups, waiting for it.
	out := func(id string, within time.Duration) time.Time {
		t.Helper()
		eventually(t, within, id+" out of lookups", func() error {
			if _, ok := listed()[id]; ok {
				return fmt.Errorf("still listed")
			}
			return nil
		})
		return time.Now()
	}
	back := func(id string) time.Time {
		t.Helper()
		eventually(t, 30*time.Second, id+" back in lookups", func() error {
			if _, ok := listed()[id]; !ok {
				return fmt.Errorf("not listed")
			}
			return nil
		})
		return time.Now()
	}
	served := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(reads)
	}
	eventually(t, 10*time.Second, "a steady stream first", func() error { return atLeast(int64(served()), 200) })

	// Not ready: cut from the broker.
	before := pid("inventory-service-1")
	nr := window{name: "not ready", from: time.Now()}
	brokerLink, err := links.Proxy("inventory-service-1->broker")
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"upstream", "downstream"} {
		if _, err := brokerLink.AddToxic("blackhole-"+stream, "timeout", stream, 1, toxiclient.Attributes{"timeout": 0}); err != nil {
			t.Fatal(err)
		}
	}
	nrOut := out("inventory-service-1", 10*time.Second)
	time.Sleep(3 * time.Second) // out of lookups for a while: the fault's length
	nrHealed := time.Now()
	for _, stream := range []string{"upstream", "downstream"} {
		if err := brokerLink.RemoveToxic("blackhole-" + stream); err != nil {
			t.Fatal(err)
		}
	}
	nrBack := back("inventory-service-1")
	nr.to = nrBack
	windows = append(windows, nr)
	if after := pid("inventory-service-1"); after != before {
		t.Errorf("the instance that was not ready was restarted (pid %d -> %d); want it left alone", before, after)
	}

	// Paused for 2 s.
	p2 := pid("inventory-service-2")
	pw := window{name: "paused", from: time.Now()}
	if err := syscall.Kill(p2, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	pOut := out("inventory-service-2", 5*time.Second)
	time.Sleep(time.Until(pausedAt.Add(2 * time.Second)))
	resumed := time.Now()
	if err := syscall.Kill(p2, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	pBack := back("inventory-service-2")
	pw.to = pBack
	windows = append(windows, pw)

	// Killed.
	kw := window{name: "killed", from: time.Now()}
	p1 := pid("inventory-service-1")
	if err := syscall.Kill(p1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	kOut := out("inventory-service-1", 5*time.Second)
	kBack := back("inventory-service-1")
	kw.to = kBack
	windows = append(windows, kw)
	healed := served()
	eventually(t, 10*time.Second, "reads on the healed fleet", func() error { return atLeast(int64(served()), int64(healed+100)) })
	close(stop)
	wg.Wait()

	// Requests that reached each instance, from its access log (time
	// stamped by the instance).
	arrivals := func(id string) []time.Time {
		var ts []time.Time
		for _, rec := range sys.instanceLog(id) {
			if rec.Msg == "request" && strings.HasPrefix(rec.Path, "/api/products/") {
				ts = append(ts, rec.Time)
			}
		}
		return ts
	}
	// The gateway follows the registry by its watch: allow it a second.
	// Each window ends when the fault does (the instance may be back in
	// the lookups, and served, before this test sees it there).
	const follow = time.Second
	count := func(ts []time.Time, from, to time.Time) int {
		n := 0
		for _, at := range ts {
			if at.After(from) && at.Before(to) {
				n++
			}
		}
		return n
	}
	a1, a2 := arrivals("inventory-service-1"), arrivals("inventory-service-2")
	if len(a1) == 0 || len(a2) == 0 {
		t.Fatalf("no access-log lines found for the instances (%d, %d): the check would be vacuous", len(a1), len(a2))
	}
	routedNotReady := count(a1, nrOut.Add(follow), nrHealed)
	routedPaused := count(a2, pOut.Add(follow), resumed)

	mu.Lock()
	defer mu.Unlock()
	failed, outside := map[string]map[int]int{}, 0
	for _, r := range reads {
		if r.status == http.StatusOK {
			continue
		}
		w := inWindow(windows, r.at, 2*time.Second)
		if failed[w] == nil {
			failed[w] = map[int]int{}
		}
		failed[w][r.status]++
		if w == "" {
			outside++
		}
	}
	t.Logf("RES-REGISTRY-HEALTH: %d reads; failed by window and status: %v", len(reads), failed)
	t.Logf("not ready: out %v after the cut, back %v after the heal, reads it got while out %d; paused: out %v after SIGSTOP, back %v after SIGCONT, reads while out %d; killed: out %v after SIGKILL, back (restarted) after %v",
		nrOut.Sub(nr.from).Round(time.Millisecond), nrBack.Sub(nrHealed).Round(time.Millisecond), routedNotReady,
		pOut.Sub(pausedAt).Round(time.Millisecond), pBack.Sub(resumed).Round(time.Millisecond), routedPaused,
		kOut.Sub(killedAt).Round(time.Millisecond), kBack.Sub(killedAt).Round(time.Millisecond))
	if routedNotReady != 0 || routedPaused != 0 {
		t.Errorf("reads reached an instance more than %v after it left the lookups, before its fault ended: not ready %d, paused %d; want 0", follow, routedNotReady, routedPaused)
	}
	if outside != 0 {
		t.Errorf("%d reads failed outside the fault windows", outside)
	}
	if nrOut.Sub(nr.from) > 4*time.Second || pOut.Sub(pausedAt) > 4*time.Second || kOut.Sub(killedAt) > 4*time.Second {
		t.Errorf("an instance took longer than 4 s to leave the lookups (probes every 1 s, two failures)")
	}
}

// inWindow names the window at falls in, each widened by slack after its
// end; "" when none.
func inWindow(windows []window, at time.Time, slack time.Duration) string {
	for _, w := range windows {
		if !at.Before(w.from) && !at.After(w.to.Add(slack)) {
			return w.name
		}
	}
	return ""
}

// tallyFailures calls each with every failure clients saw in as and the
// window it falls in (widened by slack; "" for none), and returns how many
// there were by window and status.
func tallyFailures(as []*attempt, windows []window, slack time.Duration, each func(w string, f failure)) map[string]map[int]int {
	tally := map[string]map[int]int{}
	for _, a := range as {
		for _, f := range a.failures {
			w := inWindow(windows, f.at, slack)
			if tally[w] == nil {
				tally[w] = map[int]int{}
			}
			tally[w][f.status]++
			each(w, f)
		}
	}
	return tally
}
