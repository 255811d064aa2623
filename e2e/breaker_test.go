package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/faultinject"
	"github.com/junction-go/junction/internal/payment/clients"
	"github.com/junction-go/junction/internal/paymentsim"
	"github.com/junction-go/junction/resilience"
)

// countingTransport keeps when every attempt that leaves the client (that
// is, got past the breaker, the bulkhead and the timeout) began and ended.
type countingTransport struct {
	base  http.RoundTripper
	spans *spans
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		// The call ends when its answer has been read.
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			err, resp = rerr, nil
		}
	}
	c.spans.add(start, time.Now())
	return resp, err
}

// spans are calls from start to end.
type spans struct {
	mu sync.Mutex
	s  [][2]time.Time
}

func (s *spans) add(from, to time.Time) {
	s.mu.Lock()
	s.s = append(s.s, [2]time.Time{from, to})
	s.mu.Unlock()
}

// started counts the attempts that began in (from, to).
func (s *spans) started(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.s {
		if a[0].After(from) && a[0].Before(to) {
			n++
		}
	}
	return n
}

// maxConcurrent is the most attempts at once among those that began in
// [from, to).
func (s *spans) maxConcurrent(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	most := 0
	for _, a := range s.s {
		if a[0].Before(from) || !a[0].Before(to) {
			continue
		}
		n := 0
		for _, b := range s.s {
			if !b[0].Before(from) && b[0].Before(to) && !b[0].After(a[0]) && b[1].After(a[0]) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// counting records when each request h receives arrived.
func counting(h http.Handler, hits *spans) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		hits.add(now, now)
		h.ServeHTTP(w, r)
	})
}

// TestBreakerUnderResetPeer is RES-CIRCUIT-BREAKER on payment-service's
// edge to the payment provider, in this process: the payment provider
// (paymentsim, counting the requests it receives) behind Toxiproxy, and
// payment-service's client with its policy (ProviderPolicy; the open time
// cut to 1 s so the test sees several cycles) over discovery. The link
// resets every connection (reset_peer, 100 %) for 4 s, then heals.
//
// Expected: declines do not trip the breaker; it opens after 5 faults in a
// row; while open no attempt leaves the client and the provider sees none;
// each half-open lets at most 2 probes through at once (failsafe-go's
// half-open permits are the success threshold, returned as probes end);
// after the link heals it closes and calls succeed.
func TestBreakerUnderResetPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("fault schedule takes about 10 s")
	}
	hits, attempts := &spans{}, &spans{}
	srv := httptest.NewServer(counting(paymentsim.New(slog.New(slog.DiscardHandler)).Handler(), hits))
	defer srv.Close()
	fp := faultinject.New()
	defer fp.Close()
	px, err := fp.Proxy("payment-provider", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := discovery.NewResolver(discovery.Static{{ID: "p1", Service: "payment-provider", Endpoints: map[string]string{discovery.EndpointHTTP: px.Addr()}}})
	defer r.Close()
	client := &http.Client{Transport: &discovery.Transport{Resolver: r, Base: countingTransport{base: http.DefaultTransport.(*http.Transport).Clone(), spans: attempts}}}
	cfg := clients.ProviderPolicy(slog.New(slog.DiscardHandler))
	cfg.BreakFor = time.Second
	policy := resilience.New(cfg)
	provider := clients.NewProvider("http://payment-provider", client, policy)
	ctx := context.Background()

	// Declines are answers: twenty in a row leave the breaker closed.
	for i := range 20 {
		a, err := provider.Authorize(ctx, fmt.Sprintf("decline-%d", i), "o", 100, "EUR", "4000000000000002")
		if err != nil || !a.Declined {
			t.Fatalf("declined authorization = %+v, %v", a, err)
		}
	}
	if got := policy.Transitions(); len(got) != 0 {
		t.Fatalf("declines moved the breaker: %+v", got)
	}

	// Four callers, each an authorization every 20 ms, throughout.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, unavailable, other atomic.Int64
	var seq atomic.Int64
	for range 4 {
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				_, err := provider.Authorize(ctx, fmt.Sprintf("k-%d", seq.Add(1)), "o", 100, "EUR", "4242424242424242")
				switch {
				case err == nil:
					ok.Add(1)
				case fault.Is(err, fault.Unavailable), fault.Is(err, fault.Timeout):
					unavailable.Add(1)
				default:
					other.Add(1)
					t.Errorf("authorize: %v (not a fault)", err)
				}
			}
		})
	}
	eventually(t, 20*time.Second, "calls succeed before the fault", func() error { return atLeast(ok.Load(), 20) })
	faultStart := time.Now()
	if err := px.Add(faultinject.Toxic{Name: "reset", Type: "reset_peer", Attributes: map[string]any{"timeout": 0}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // the fault's length: what the schedule says, not a wait for a condition
	if err := px.Remove("reset"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	eventually(t, 20*time.Second, "the breaker closes after the link heals", func() error {
		if st := policy.BreakerState(); st != "closed" || policy.Stats().BreakerClosed == 0 {
			return fmt.Errorf("breaker %s, closed %d times", st, policy.Stats().BreakerClosed)
		}
		return nil
	})
	closedOK := ok.Load()
	eventually(t, 20*time.Second, "calls succeed after closing", func() error { return atLeast(ok.Load(), closedOK+20) })
	close(stop)
	wg.Wait()
	end := time.Now()

	tr := policy.Transitions()
	for _, x := range tr {
		t.Logf("%7.3fs %s", x.At.Sub(faultStart).Seconds(), x.To)
	}
	t.Logf("calls: %d ok, %d unavailable; attempts %d; provider hits %d; fault 0-%.1fs",
		ok.Load(), unavailable.Load(), attempts.started(faultStart.Add(-time.Hour), end), hits.started(faultStart.Add(-time.Hour), end), healed.Sub(faultStart).Seconds())
	if len(tr) < 3 || tr[0].To != "open" || tr[len(tr)-1].To != "closed" {
		t.Fatalf("transitions %+v: want open first, closed last", tr)
	}
	// Opened after BreakAfter faults: the attempts since the fault began,
	// all failed, are at least 5.
	if n := attempts.started(faultStart, tr[0].At); n < int(cfg.BreakAfter) {
		t.Errorf("opened after %d attempts, want at least %d faults first", n, cfg.BreakAfter)
	}
	// An attempt admitted just before the breaker opened may reach the
	// transport a moment after: grace covers that gap.
	const grace = 10 * time.Millisecond
	for i, x := range tr {
		next := end
		if i+1 < len(tr) {
			next = tr[i+1].At
		}
		switch x.To {
		case "open":
			if n := attempts.started(x.At.Add(grace), next); n != 0 {
				t.Errorf("open %.3fs-%.3fs: %d attempts left the client, want 0", x.At.Sub(faultStart).Seconds(), next.Sub(faultStart).Seconds(), n)
			}
			if n := hits.started(x.At.Add(grace), next); n != 0 {
				t.Errorf("open %.3fs-%.3fs: the provider saw %d requests, want 0", x.At.Sub(faultStart).Seconds(), next.Sub(faultStart).Seconds(), n)
			}
			if i+1 < len(tr) && tr[i+1].To != "half-open" {
				t.Errorf("after open came %s, want half-open", tr[i+1].To)
			}
			if i+1 < len(tr) && tr[i+1].At.Sub(x.At) < cfg.BreakFor {
				t.Errorf("half-open %v after opening, want at least %v", tr[i+1].At.Sub(x.At), cfg.BreakFor)
			}
		case "half-open":
			// Probes are admitted after the change to half-open; a failed
			// one reopens the breaker while another may still be on its
			// way (grace), while closing needs both to have answered.
			until := next
			if i+1 < len(tr) && tr[i+1].To == "open" {
				until = next.Add(grace)
			}
			if n := attempts.maxConcurrent(x.At, until); n > 2 {
				t.Errorf("half-open %.3fs-%.3fs: %d probes at once, want at most 2", x.At.Sub(faultStart).Seconds(), next.Sub(faultStart).Seconds(), n)
			}
			// Two succeed and it closes, or one fails and it opens: with
			// a permit handed on as a probe ends, three at the most.
			if n := attempts.started(x.At, until); n > 3 {
				t.Errorf("half-open %.3fs-%.3fs: %d probes, want at most 3", x.At.Sub(faultStart).Seconds(), next.Sub(faultStart).Seconds(), n)
			}
		}
	}
	if opened := policy.Stats().BreakerOpened; opened < 2 {
		t.Errorf("breaker opened %d times in a 4 s fault with 1 s open: want at least 2 (probes fail while the link resets)", opened)
	}
}

// atLeast is nil when n has reached want.
func atLeast(n, want int64) error {
	if n < want {
		return fmt.Errorf("%d of %d", n, want)
	}
	return nil
}
