package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry/telemetrytest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func get(t *testing.T, url string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func checkProblem(t *testing.T, resp *http.Response, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d", resp.StatusCode, status)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want a problem document", ct)
	}
}

func TestAddressRateLimit(t *testing.T) {
	var limited atomic.Int64
	h := limitAddress(Limits{PerAddress: 5, AddressBurst: 5}, quiet, &limited)(http.HandlerFunc(ok))
	srv := httptest.NewServer(rest.Chain(h, rest.RequestID))
	defer srv.Close()
	for i := range 5 {
		if resp := get(t, srv.URL); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d within the burst = %d", i, resp.StatusCode)
		}
	}
	checkProblem(t, get(t, srv.URL), http.StatusTooManyRequests)
	if limited.Load() != 1 {
		t.Errorf("rate-limited count = %d, want 1", limited.Load())
	}
}

func TestUserRateLimitIsPerUser(t *testing.T) {
	var limited atomic.Int64
	limit := limitUser(Limits{PerUser: 1, UserBurst: 3}, quiet, &limited)(http.HandlerFunc(ok))
	// Stands in for the token check: the user id comes in a header.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.Header.Get("X-Test-User"), 10, 64)
		limit.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{UserID: id, Role: auth.RoleCustomer})))
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		if resp := get(t, srv.URL, "X-Test-User", "1"); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("user 1 within the burst = %d", resp.StatusCode)
		}
	}
	checkProblem(t, get(t, srv.URL, "X-Test-User", "1"), http.StatusTooManyRequests)
	if resp := get(t, srv.URL, "X-Test-User", "2"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("user 2 after user 1 was limited = %d, want 204", resp.StatusCode)
	}
}

func TestShedsBeyondMaxInFlight(t *testing.T) {
	var inFlight, shedCount atomic.Int64
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(rest.Chain(slow, rest.RequestID, shed(2, quiet, &inFlight, &shedCount)))
	defer srv.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, srv.URL) }()
	}
	<-entered
	<-entered // two requests are being worked on
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var p rest.Problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	checkProblem(t, resp, http.StatusServiceUnavailable)
	if p.Code != "overloaded" {
		t.Errorf("problem code = %q, want overloaded", p.Code)
	}
	close(release)
	wg.Wait()
	if resp := get(t, srv.URL); resp.StatusCode != http.StatusNoContent {
		t.Errorf("after the load passed = %d, want 204", resp.StatusCode)
	}
	if shedCount.Load() != 1 || inFlight.Load() != 0 {
		t.Errorf("shed %d, in flight %d; want 1 and 0", shedCount.Load(), inFlight.Load())
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	k := newKeyedLimiter(1e6, 1) // refills at once: every bucket is full again
	k.cap = 10
	now := time.Now()
	for i := range 1000 {
		k.wait("client-"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(k.m) > k.cap+1 {
		t.Errorf("buckets kept = %d, want at most %d", len(k.m), k.cap+1)
	}
}

// TestThrottleNewWork: while the service behind refuses new work with 503,
// the gateway soon refuses most of it itself (503 overloaded, Retry-After)
// without sending it on, and counts that; once the service takes work
// again and the 2 s window has passed, the gateway sends everything on
// from the first request that gets through. A service that refuses
// nothing is never throttled.
func TestThrottleNewWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refusing atomic.Bool
		var reached atomic.Int64
		var counter atomic.Int64
		h := throttleNewWork(true, newOrderRoom(), quiet, &counter)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached.Add(1)
			if refusing.Load() {
				rest.WriteProblem(w, r, http.StatusServiceUnavailable, "unavailable", "full")
				return
			}
			w.WriteHeader(http.StatusCreated)
		}))
		send := func(n int) (local int) {
			for range n {
				before := reached.Load()
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/orders", nil))
				if reached.Load() == before {
					local++
					if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"code":"overloaded"`) {
						t.Errorf("a throttled request got %d %v %s", rec.Code, rec.Header(), rec.Body)
					}
				}
			}
			return local
		}
		if local := send(200); local != 0 {
			t.Fatalf("%d of 200 refused while the service took everything", local)
		}
		time.Sleep(3 * time.Second)
		refusing.Store(true)
		local := send(400)
		if local < 200 || int64(local) != counter.Load() {
			t.Fatalf("%d of 400 refused at the gateway (counted %d) while the service refused all, want most", local, counter.Load())
		}
		// The service takes work again. The gateway learns it from the
		// first request it sends on (its failures have aged out of the
		// window by then), and from there on sends everything.
		refusing.Store(false)
		time.Sleep(3 * time.Second)
		for i := 0; send(1) == 1; i++ {
			if i == 1000 {
				t.Fatal("1,000 new orders refused at the gateway after the service took work again")
			}
		}
		if local := send(100); local != 0 {
			t.Errorf("%d of 100 refused after the service took work again", local)
		}
	})
}

// TestThrottleNewWorkFollowsWhatTheServiceTakes: a service that takes 100
// new orders a second and refuses the rest, offered 1,000 a second. The
// gateway sends on about a ninth more than the service takes, whatever is
// offered (the SRE book's client-side throttling, its own refusals counted
// among those asked for): the service's own refusals, each a hop on a busy
// machine, stay a small share, and most of what it can take still reaches
// it (not all: it takes at most 10 in each 100 ms, and the orders sent on
// at random leave some of those short).
func TestThrottleNewWorkFollowsWhatTheServiceTakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var counter atomic.Int64
		var sent, taken int
		window := time.Now()
		inWindow := 0
		h := throttleNewWork(true, newOrderRoom(), quiet, &counter)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sent++
			if now := time.Now(); now.Sub(window) >= 100*time.Millisecond {
				window, inWindow = now, 0
			}
			if inWindow == 10 {
				rest.WriteProblem(w, r, http.StatusServiceUnavailable, "overloaded", "full")
				return
			}
			inWindow++
			taken++
			w.WriteHeader(http.StatusCreated)
		}))
		for i := range 6000 { // 6 s at one a millisecond
			if i == 2000 {
				sent, taken = 0, 0 // the last 4 s
			}
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/orders", nil))
			time.Sleep(time.Millisecond)
		}
		if taken < 280 {
			t.Errorf("the service took %d in 4 s, able to take 400: the throttle starves it", taken)
		}
		if refusedThere := sent - taken; refusedThere > taken/4 {
			t.Errorf("the gateway sent on %d of 4,000 and the service refused %d of them, against %d taken: want at most a quarter of what it took", sent, refusedThere, taken)
		} else {
			t.Logf("sent on %d, taken %d, refused at the gateway %d", sent, taken, counter.Load())
		}
	})
}

// TestThrottleNewWorkOff: with the throttle off, every new order goes on
// to the service, however much it refuses.
func TestThrottleNewWorkOff(t *testing.T) {
	var reached, counter atomic.Int64
	h := throttleNewWork(false, newOrderRoom(), quiet, &counter)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		rest.WriteProblem(w, r, http.StatusServiceUnavailable, "unavailable", "full")
	}))
	for range 400 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/orders", nil))
	}
	if reached.Load() != 400 || counter.Load() != 0 {
		t.Fatalf("%d of 400 reached the service, %d throttled, with the throttle off", reached.Load(), counter.Load())
	}
}

// TestShedsNewOrdersFirst: with three quarters of the limit in flight, a
// new order is shed and a status read still goes through; past the whole
// limit, the read is shed too.
func TestShedsNewOrdersFirst(t *testing.T) {
	var inFlight, shedCount atomic.Int64
	entered := make(chan struct{}, 8)
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost { // a new order let through is answered at once
			w.WriteHeader(http.StatusNoContent)
			return
		}
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	h := shed(4, quiet, &inFlight, &shedCount)(slow)
	serve := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	var wg sync.WaitGroup
	var codes [4]int
	for i := range 3 {
		wg.Go(func() { codes[i] = serve("GET", "/api/orders/1").Code })
		<-entered
	}
	if rec := serve("POST", "/api/orders"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a new order with 3 of 4 in flight got %d, want 503", rec.Code)
	}
	wg.Go(func() { codes[3] = serve("GET", "/api/orders/2").Code })
	<-entered // the read took the last quarter
	if rec := serve("GET", "/api/orders/3"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a read with 4 of 4 in flight got %d, want 503", rec.Code)
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusNoContent {
			t.Errorf("request %d in flight got %d, want 204", i, c)
		}
	}
	if shedCount.Load() != 2 || inFlight.Load() != 0 {
		t.Errorf("shed %d, in flight %d; want 2 and 0", shedCount.Load(), inFlight.Load())
	}
	if rec := serve("POST", "/api/orders"); rec.Code != http.StatusNoContent {
		t.Errorf("a new order after the load passed got %d, want 204", rec.Code)
	}
}

func TestPriorityOfRoutes(t *testing.T) {
	for _, tt := range []struct {
		method, path string
		want         resilience.Priority
	}{
		{"POST", "/api/orders", resilience.PriorityNew},
		{"GET", "/api/orders", resilience.PriorityAdmitted},
		{"GET", "/api/orders/7", resilience.PriorityAdmitted},
		{"POST", "/api/orders/7/cancel", resilience.PriorityAdmitted},
		{"GET", "/api/shipments/7", resilience.PriorityAdmitted},
		{"GET", "/api/notifications", resilience.PriorityAdmitted},
		{"GET", "/api/admin/deadletters", resilience.PriorityAdmitted},
		{"GET", "/api/products", resilience.PriorityDefault},
		{"POST", "/api/auth/login", resilience.PriorityDefault},
		{"GET", "/api/ordersx", resilience.PriorityDefault},
	} {
		if got := priorityOf(httptest.NewRequest(tt.method, tt.path, nil)); got != tt.want {
			t.Errorf("%s %s: priority %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestClientsDoNotChooseTheirPriority: what a client says of its own
// priority never reaches a service; the gateway's word does.
func TestClientsDoNotChooseTheirPriority(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	r := discovery.NewResolver(discovery.Static{{ID: "i1", Service: services.Inventory, Endpoints: map[string]string{discovery.EndpointHTTP: up.Listener.Addr().String()}}})
	defer r.Close()
	gw := New(r, auth.NewVerifier(auth.HTTPKeySource(http.DefaultClient, "http://127.0.0.1:1/jwks"), nil), DefaultLimits, nil, quiet)
	front := httptest.NewServer(gw.Handler())
	defer front.Close()
	resp := get(t, front.URL+"/api/products/JX-MUG", "X-Failsafe-Level", "499", "X-Failsafe-Priority", "4")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d, want the upstream's 204", resp.StatusCode)
	}
	h := <-seen
	if l, p := h.Get("X-Failsafe-Level"), h.Get("X-Failsafe-Priority"); l != "" || p != strconv.Itoa(int(resilience.PriorityDefault)) {
		t.Errorf("upstream saw level %q, priority %q; want no level and priority %d", l, p, resilience.PriorityDefault)
	}
}

// TestReportRefusals: a second in which the gateway refused requests
// itself gives one line at info with the count for each reason; a second
// with none gives none.
func TestReportRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf telemetrytest.Buffer
		log := slog.New(slog.NewJSONHandler(&buf, nil))
		r := discovery.NewResolver(discovery.Static{})
		defer r.Close()
		verifier := auth.NewVerifier(auth.HTTPKeySource(http.DefaultClient, "http://127.0.0.1:1/jwks"), nil)
		g := New(r, verifier, Limits{PerAddress: 1, AddressBurst: 1}, nil, log)
		h := g.Handler()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { g.ReportRefusals(ctx); close(done) }()
		synctest.Wait()
		for range 5 {
			req := httptest.NewRequest(http.MethodGet, "/api/products/SKU-1", nil)
			req.RemoteAddr = "192.0.2.1:4000"
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		time.Sleep(2500 * time.Millisecond) // two reports due: one with the refusals, one without
		cancel()
		<-done

		var reports []map[string]any
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec["msg"] == "requests refused in the last second" {
				reports = append(reports, rec)
			}
		}
		if len(reports) != 1 {
			t.Fatalf("%d reports, want 1: %v", len(reports), reports)
		}
		if got := reports[0]; got["level"] != "INFO" || got["rate_limited"] != 4.0 || got["shed"] != 0.0 || got["throttled_new_orders"] != 0.0 {
			t.Errorf("report = %v, want INFO with rate_limited 4, shed 0, throttled_new_orders 0", got)
		}
	})
}
