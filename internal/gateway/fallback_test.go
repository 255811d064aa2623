package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

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
