package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/internal/faultinject"
	"github.com/junction-go/junction/internal/gateway"
	"github.com/junction-go/junction/rest"
)

// backend stands in for a service instance and watches what the
// gateway's requests make it do.
type backend struct {
	mu       sync.Mutex
	arrivals map[string][]time.Time // by X-Test-Seq

	started, completed, cancelled, refusedLate atomic.Int64
	noDeadline, deadlineTooLate                atomic.Int64
}

func newBackend() *backend { return &backend{arrivals: map[string][]time.Time{}} }

// requestTimeout is the gateway's in TestRetryBudgetAndDeadline: the
// deadline every request it forwards carries.
const requestTimeout = 2 * time.Second

// handler: every arrival is stamped; rest.Deadline refuses a request whose
// deadline has passed; the work (30 ms) stops when the deadline passes (it
// checks its context's deadline before it commits), and work that ran
// without a deadline, or with one later than the gateway's own timeout
// allows, is counted (it must never be: every request the gateway forwards
// carries the deadline of its 2 s timeout).
func (b *backend) handler() http.Handler {
	work := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One connection per request, so the faults that Toxiproxy draws
		// per connection are drawn per request.
		w.Header().Set("Connection", "close")
		b.started.Add(1)
		deadline, bounded := r.Context().Deadline()
		switch {
		case !bounded:
			b.noDeadline.Add(1)
		case deadline.After(time.Now().Add(requestTimeout)):
			// The gateway's timer began before this arrival.
			b.deadlineTooLate.Add(1)
		}
		select {
		case <-time.After(30 * time.Millisecond): // the work itself
			// As a careful handler does before it commits: work whose
			// deadline passed meanwhile is dropped. The deadline is read
			// against the clock as well as the context: on a busy machine
			// the context's timer can fire after the deadline it keeps, and
			// select picks either of two ready cases.
			if r.Context().Err() != nil || (bounded && !time.Now().Before(deadline)) {
				b.cancelled.Add(1)
				return
			}
			b.completed.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		case <-r.Context().Done():
			b.cancelled.Add(1)
		}
	})
	deadlined := rest.Deadline(work)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		seq := r.Header.Get("X-Test-Seq")
		b.arrivals[seq] = append(b.arrivals[seq], time.Now())
		b.mu.Unlock()
		before := b.started.Load()
		deadlined.ServeHTTP(w, r)
		if b.started.Load() == before && r.Header.Get(rest.DeadlineHeader) != "" {
			b.refusedLate.Add(1)
		}
	})
}

// TestRetryBudgetAndDeadline is RES-RETRY-BUDGET-AND-DEADLINE at the
// gateway: a 2 s request timeout whose deadline travels downstream in
// X-Request-Deadline; two instances of a service, each behind Toxiproxy:
// one with latency 1,500 ms ± 600 ms on the request and 1,500 ms on the
// answer, each on half its connections; the other resets a third of its
// connections after the request arrived. 300 requests at 50/s: GETs,
// POSTs without and with an Idempotency-Key.
//
// Expected: attempts ≤ 1.2 × requests (the retry budget); a POST without
// a key reaches a service at most once; retries back off (≥ 7.5 ms apart,
// 10 ms − 25 % jitter); every piece of work runs under the gateway's
// deadline and stops at it; every answer, 504 included, within 2 s +
// 150 ms; only 200, 502, 503 and 504.
func TestRetryBudgetAndDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 8 s")
	}
	fp := faultinject.New()
	defer fp.Close()
	slow, resetting := newBackend(), newBackend()
	var instances discovery.Static
	proxies := map[string]*faultinject.Proxy{}
	for name, b := range map[string]*backend{"slow": slow, "resetting": resetting} {
		srv := httptest.NewServer(b.handler())
		defer srv.Close()
		px, err := fp.Proxy(name, srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		proxies[name] = px
		// The same two instances serve the GETs (inventory-service's
		// route) and the POSTs (user-service's).
		for _, svc := range []string{services.Inventory, services.User} {
			instances = append(instances, discovery.Instance{ID: name + "-" + svc, Service: svc, Endpoints: map[string]string{discovery.EndpointHTTP: px.Addr()}})
		}
	}
	for _, tx := range []faultinject.Toxic{
		{Name: "slow-request", Type: "latency", Stream: "upstream", Toxicity: 0.5, Attributes: map[string]any{"latency": 1500, "jitter": 600}},
		{Name: "slow-answer", Type: "latency", Stream: "downstream", Toxicity: 0.5, Attributes: map[string]any{"latency": 1500}},
	} {
		if err := proxies["slow"].Add(tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := proxies["resetting"].Add(faultinject.Toxic{Name: "reset", Type: "reset_peer", Toxicity: 0.33, Attributes: map[string]any{"timeout": 0}}); err != nil {
		t.Fatal(err)
	}

	r := discovery.NewResolver(instances)
	defer r.Close()
	limits := gateway.DefaultLimits
	limits.RequestTimeout = requestTimeout
	verifier := auth.NewVerifier(auth.HTTPKeySource(http.DefaultClient, "http://127.0.0.1:1/jwks"), nil)
	gw := gateway.New(r, verifier, limits, nil, slog.New(slog.DiscardHandler))
	front := httptest.NewServer(gw.Handler())
	defer front.Close()

	type result struct {
		kind    string
		status  int
		elapsed time.Duration
		body    string
	}
	const n = 300
	results := make([]result, n)
	var wg sync.WaitGroup
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		kind := []string{"get", "get", "get", "get", "get", "get", "get", "post", "post", "post-key"}[i%10]
		wg.Go(func() {
			var req *http.Request
			switch kind {
			case "get":
				req, _ = http.NewRequest(http.MethodGet, front.URL+"/api/products/SKU-"+fmt.Sprint(i), nil)
			default:
				req, _ = http.NewRequest(http.MethodPost, front.URL+"/api/auth/login", strings.NewReader(`{"username":"u","password":"p"}`))
				req.Header.Set("Content-Type", "application/json")
				if kind == "post-key" {
					req.Header.Set("Idempotency-Key", fmt.Sprint("key-", i))
				}
			}
			req.Header.Set("X-Test-Seq", fmt.Sprint(kind, "-", i))
			start := time.Now()
			resp, err := http.DefaultClient.Do(req.WithContext(context.Background()))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results[i] = result{kind: kind, status: resp.StatusCode, elapsed: time.Since(start), body: string(body)}
		})
	}
	wg.Wait()

	st := gw.Stats()
	statuses := map[int]int{}
	var slowest time.Duration
	for _, res := range results {
		if statuses[res.status] == 0 && res.status != http.StatusOK {
			t.Logf("first %d (%s): %s", res.status, res.kind, res.body)
		}
		statuses[res.status]++
		slowest = max(slowest, res.elapsed)
	}
	// Per request, every arrival at either instance, in time order.
	bySeq := map[string][]time.Time{}
	arrivals, postTwice, tooSoon := 0, 0, 0
	for _, b := range []*backend{slow, resetting} {
		b.mu.Lock()
		for seq, ts := range b.arrivals {
			bySeq[seq] = append(bySeq[seq], ts...)
			arrivals += len(ts)
		}
		b.mu.Unlock()
	}
	for seq, ts := range bySeq {
		if strings.HasPrefix(seq, "post-") && !strings.HasPrefix(seq, "post-key") && len(ts) > 1 {
			postTwice++
		}
		// A retry leaves at least the backoff after its attempt failed,
		// which is after that attempt arrived.
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		for i := 1; i < len(ts); i++ {
			if ts[i].Sub(ts[i-1]) < 7500*time.Microsecond {
				tooSoon++
			}
		}
	}
	attempts := int64(n) + st.Retries
	t.Logf("requests %d, statuses %v, retries %d (refused by the budget %d), arrivals %d, slowest answer %v",
		n, statuses, st.Retries, st.RetriesRefused, arrivals, slowest.Round(time.Millisecond))
	for name, b := range map[string]*backend{"slow": slow, "resetting": resetting} {
		t.Logf("%s: started %d, completed %d, cancelled at the deadline %d, refused on arrival (deadline passed) %d, ran without a deadline %d, with one past the gateway's %d",
			name, b.started.Load(), b.completed.Load(), b.cancelled.Load(), b.refusedLate.Load(), b.noDeadline.Load(), b.deadlineTooLate.Load())
	}
	if st.Retries == 0 {
		t.Error("no retry happened: the scenario did not exercise the policy")
	}
	if float64(attempts) > 1.2*n {
		t.Errorf("attempts = %d for %d requests, want at most 1.2x", attempts, n)
	}
	if postTwice != 0 {
		t.Errorf("%d POSTs without an Idempotency-Key reached a service twice", postTwice)
	}
	if tooSoon != 0 {
		t.Errorf("%d retries arrived less than 7.5 ms after the attempt before", tooSoon)
	}
	for name, b := range map[string]*backend{"slow": slow, "resetting": resetting} {
		if b.noDeadline.Load() != 0 {
			t.Errorf("%s ran %d pieces of work without a deadline", name, b.noDeadline.Load())
		}
		if b.deadlineTooLate.Load() != 0 {
			t.Errorf("%s ran %d pieces of work with a deadline past the gateway's timeout", name, b.deadlineTooLate.Load())
		}
	}
	if slowest > requestTimeout+150*time.Millisecond {
		t.Errorf("slowest answer %v, want within 2 s + 150 ms", slowest)
	}
	for status, count := range statuses {
		switch status {
		case http.StatusOK, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		default:
			t.Errorf("%d answers with status %d", count, status)
		}
	}
	if statuses[http.StatusGatewayTimeout] == 0 {
		t.Error("no 504: the deadline was never reached, the scenario did not exercise it")
	}
}
