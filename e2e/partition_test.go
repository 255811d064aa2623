package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/junction-go/junction/sqldb"
)

// window is a stretch of the fault schedule.
type window struct {
	name     string
	from, to time.Time
}

// TestNetPartitionAndDegrade is NET-PARTITION-AND-DEGRADE: the shop runs
// with --fault-links (Toxiproxy in front of every instance and of its
// broker connection) under 20 orders/s for about 45 s while:
//
//	(a) order-service's link to the broker is a blackhole for 8 s;
//	(b) the gateway's (and everyone's) link to order-service is down for 5 s;
//	(c) both links get 100 ms ± 50 ms latency and 375 KB/s for 12 s.
//
// Expected: outbox rows pile up during (a) and are all published after;
// no order is lost (every accepted order ends, the invariants hold); the
// gateway's errors are 503 or 504 with Retry-After and only inside a fault
// window (plus the time the registry takes to notice); under (c) the
// throughput and saga time are reported.
func TestNetPartitionAndDegrade(t *testing.T) {
	seed := sagaSeed(t)
	s := startShop(t, []string{fmt.Sprintf("JUNCTION_SEED=%d", seed)}, nil, "--fault-links")
	if s.sys.Links == "" {
		t.Fatal("junction up --fault-links printed no links address")
	}
	links := toxiclient.NewClient(s.sys.Links)
	link := func(name string) *toxiclient.Proxy {
		p, err := links.Proxy(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		return p
	}
	toOrder, orderToBroker := link("order-service-1"), link("order-service-1->broker")
	db, err := sqldb.Open(context.Background(), filepath.Join(s.sys.Data, "order-service", "order-service.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	unsent := func() int64 {
		var n int64
		if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
			t.Errorf("count unsent: %v", err)
		}
		return n
	}
	both := func(p *toxiclient.Proxy, name, typ string, attrs toxiclient.Attributes) {
		for _, stream := range []string{"upstream", "downstream"} {
			if _, err := p.AddToxic(name+"-"+stream, typ, stream, 1, attrs); err != nil {
				t.Fatalf("%s on %s: %v", name, p.Name, err)
			}
		}
	}
	clear := func(p *toxiclient.Proxy) {
		toxics, err := p.Toxics()
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range toxics {
			if err := p.RemoveToxic(tx.Name); err != nil {
				t.Fatal(err)
			}
		}
	}

	n := sagaOrders(900)
	loaded := make(chan []*attempt, 1)
	loadStart := time.Now()
	go func() { loaded <- s.load(n, 20, mixed(rand.New(rand.NewPCG(seed, 7))), anyCard, nil) }()

	// The schedule's pauses are the fault's shape, not waits for a
	// condition.
	var windows []window
	time.Sleep(5 * time.Second)

	// (a) order-service cannot reach the broker.
	a := window{name: "a: order-service->broker blackhole 8s", from: time.Now()}
	both(orderToBroker, "blackhole", "timeout", toxiclient.Attributes{"timeout": 0})
	var maxUnsent int64
	for time.Since(a.from) < 8*time.Second {
		maxUnsent = max(maxUnsent, unsent())
		time.Sleep(250 * time.Millisecond)
	}
	clear(orderToBroker)
	a.to = time.Now()
	windows = append(windows, a)
	eventually(t, 60*time.Second, "the outbox drains after the partition heals", func() error {
		if u := unsent(); u > 0 {
			return fmt.Errorf("%d rows unsent", u)
		}
		return nil
	})
	drained := time.Since(a.to)

	time.Sleep(3 * time.Second)
	// (b) nobody can reach order-service.
	b := window{name: "b: order-service link down 5s", from: time.Now()}
	if err := toOrder.Disable(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := toOrder.Enable(); err != nil {
		t.Fatal(err)
	}
	b.to = time.Now()
	windows = append(windows, b)

	time.Sleep(3 * time.Second)
	// (c) a slow, narrow network to and from order-service.
	c := window{name: "c: 100ms±50ms, 375 KB/s on both links 12s", from: time.Now()}
	for _, p := range []*toxiclient.Proxy{toOrder, orderToBroker} {
		both(p, "latency", "latency", toxiclient.Attributes{"latency": 50, "jitter": 25})
		both(p, "bandwidth", "bandwidth", toxiclient.Attributes{"rate": 375})
	}
	time.Sleep(12 * time.Second)
	clear(toOrder)
	clear(orderToBroker)
	c.to = time.Now()
	windows = append(windows, c)

	as := <-loaded
	rep, views := s.check(as, seed, nil)

	// The gateway's errors: which, with Retry-After, and when. The
	// registry needs up to two probe failures (2 s) to take an instance
	// out and a probe to bring it back, so each window is widened by 5 s.
	outside, noRetryAfter, badStatus := 0, 0, 0
	byWindow := tallyFailures(as, windows, 5*time.Second, func(w string, f failure) {
		switch {
		case f.status != 503 && f.status != 504:
			badStatus++
		case f.retryAfter == "":
			noRetryAfter++
		}
		if w == "" {
			outside++
		}
	})
	// Degraded service under (c) beside the quiet start.
	sagaTimes := func(from, to time.Time) (int, time.Duration, time.Duration) {
		var ds []time.Duration
		for _, at := range as {
			if at.id == 0 || at.start.Before(from) || at.start.After(to) {
				continue
			}
			if d, ok := sagaTime(views[at.id]); ok {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return 0, 0, 0
		}
		slices.Sort(ds)
		return len(ds), ds[len(ds)/2], ds[len(ds)*99/100]
	}
	qn, q50, q99 := sagaTimes(loadStart, a.from)
	cn, c50, c99 := sagaTimes(c.from, c.to)
	t.Logf("NET-PARTITION-AND-DEGRADE: orders %d (completed %d, rejected %d %v), stuck %d, indeterminate %d", rep.Orders, rep.Completed, rep.Rejected, rep.Reasons, rep.Stuck, rep.Indeterminate)
	t.Logf("(a) outbox unsent at most %d during the blackhole, all sent %v after it healed", maxUnsent, drained.Round(time.Millisecond))
	t.Logf("gateway 5xx by window: %v (outside any window %d, without Retry-After %d, not 503/504 %d)", byWindow, outside, noRetryAfter, badStatus)
	t.Logf("saga time: quiet start %d orders p50 %v p99 %v; under (c) %d orders (%.1f/s) p50 %v p99 %v",
		qn, q50.Round(time.Millisecond), q99.Round(time.Millisecond), cn, float64(cn)/c.to.Sub(c.from).Seconds(), c50.Round(time.Millisecond), c99.Round(time.Millisecond))

	if maxUnsent == 0 {
		t.Error("no outbox row waited during the blackhole: the partition did not bite")
	}
	if outside != 0 || noRetryAfter != 0 || badStatus != 0 {
		t.Errorf("gateway errors outside the fault windows %d, without Retry-After %d, other than 503/504 %d; want 0", outside, noRetryAfter, badStatus)
	}
}
