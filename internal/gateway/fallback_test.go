package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/rest"
)

func TestCatalogueFallsBackToTheLastGoodCopy(t *testing.T) {
	var down atomic.Bool
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.Header().Set("Retry-After", "1")
			rest.WriteProblem(w, r, http.StatusServiceUnavailable, "unavailable", "inventory-service is unavailable")
			return
		}
		rest.JSON(w, http.StatusOK, map[string]any{"items": []string{"JX-MUG"}})
	})
	var used atomic.Int64
	srv := httptest.NewServer((&lastGood{counter: &used}).wrap(upstream))
	defer srv.Close()
	fetch := func() (int, string, http.Header) {
		resp, err := http.Get(srv.URL + "/api/products")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	down.Store(true)
	if code, _, _ := fetch(); code != http.StatusServiceUnavailable {
		t.Errorf("down with no copy yet = %d, want the 503", code)
	}
	down.Store(false)
	_, good, _ := fetch()
	down.Store(true)
	code, body, h := fetch()
	if code != http.StatusOK || body != good || h.Get("X-Junction-Fallback") != "last-good-copy" || h.Get("Age") == "" || h.Get("Content-Type") != "application/json" {
		t.Errorf("down after a good answer = %d %q (fallback %q, age %q, type %q); want the copy %q marked as such",
			code, body, h.Get("X-Junction-Fallback"), h.Get("Age"), h.Get("Content-Type"), good)
	}
	if used.Load() != 1 {
		t.Errorf("fallbacks counted = %d, want 1", used.Load())
	}
}

// TestCatalogueCopyIsRenewedEverySecond: while answers are good the copy
// is renewed at most once a second, so the fallback is never older than
// a second of good answers.
func TestCatalogueCopyIsRenewedEverySecond(t *testing.T) {
	var version atomic.Int64
	var down atomic.Bool
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			rest.WriteProblem(w, r, http.StatusServiceUnavailable, "unavailable", "inventory-service is unavailable")
			return
		}
		rest.JSON(w, http.StatusOK, map[string]any{"version": version.Load()})
	})
	var clock atomic.Int64 // the server reads it from its own goroutines
	clock.Store(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	var used atomic.Int64
	lg := &lastGood{counter: &used, now: func() time.Time { return time.Unix(0, clock.Load()) }}
	srv := httptest.NewServer(lg.wrap(upstream))
	defer srv.Close()
	body := func() string {
		resp, err := http.Get(srv.URL + "/api/products")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	fallback := func() string {
		down.Store(true)
		defer down.Store(false)
		return body()
	}

	version.Store(1)
	v1 := body()
	version.Store(2)
	advance(999 * time.Millisecond)
	body() // within the second: not kept
	if got := fallback(); got != v1 {
		t.Errorf("fallback within a second of the copy = %q, want the first copy %q", got, v1)
	}
	advance(time.Millisecond)
	v2 := body() // a second after the copy: kept
	if got := fallback(); got != v2 || v2 == v1 {
		t.Errorf("fallback after a second = %q, want the renewed copy %q (not %q)", got, v2, v1)
	}
}
