package rest_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/junction-go/junction/rest"
)

type accessLine struct {
	Level    string `json:"level"`
	Msg      string `json:"msg"`
	Path     string `json:"path"`
	Status   int    `json:"status"`
	Unlogged *int64 `json:"unlogged_refusals"`
}

// accessLogged serves the paths through AccessLog logging at level, and
// returns the lines it wrote. /refused answers 503 with Retry-After,
// /limited 429 with it, /down 503 without it, anything else 200; a path
// of "" is a second passing.
func accessLogged(t *testing.T, level slog.Level, paths ...string) []accessLine {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	h := rest.AccessLog(log)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/refused":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/limited":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	for _, p := range paths {
		if p == "" {
			time.Sleep(time.Second)
			continue
		}
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	var lines []accessLine
	for _, raw := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var l accessLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// TestAccessLogSamplesRefusals: of the refusals (429 or 503 with
// Retry-After) the first of each second is logged at info with the number
// left unlogged since the one before; every other answer, a 503 without
// Retry-After included, has its own line; at debug every refusal has one.
func TestAccessLogSamplesRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var paths []string
		paths = append(paths, slices.Repeat([]string{"/refused"}, 100)...)
		paths = append(paths, "/ok", "/down", "/limited", "")
		paths = append(paths, slices.Repeat([]string{"/limited"}, 5)...)
		paths = append(paths, "/ok")
		lines := accessLogged(t, slog.LevelInfo, paths...)

		type want struct {
			path     string
			unlogged int64 // -1: not a sampled refusal
		}
		// The 429 in the first second is not logged: the first /limited of
		// the next second counts it with the other 99 refusals unlogged.
		wants := []want{{"/refused", 0}, {"/ok", -1}, {"/down", -1}, {"/limited", 100}, {"/ok", -1}}
		if len(lines) != len(wants) {
			t.Fatalf("%d lines logged, want %d: %+v", len(lines), len(wants), lines)
		}
		for i, w := range wants {
			l := lines[i]
			if l.Msg != "request" || l.Level != "INFO" || l.Path != w.path {
				t.Errorf("line %d = %+v, want an INFO request line for %s", i, l, w.path)
			}
			switch {
			case w.unlogged < 0 && l.Unlogged != nil:
				t.Errorf("line %d (%s, status %d) has unlogged_refusals %d; it is not a refusal", i, l.Path, l.Status, *l.Unlogged)
			case w.unlogged >= 0 && (l.Unlogged == nil || *l.Unlogged != w.unlogged):
				t.Errorf("line %d (%s): unlogged_refusals = %v, want %d", i, l.Path, l.Unlogged, w.unlogged)
			}
		}
	})
}

// TestAccessLogRefusalsAtDebug: logging at debug, every refusal has its
// line.
func TestAccessLogRefusalsAtDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lines := accessLogged(t, slog.LevelDebug, slices.Repeat([]string{"/refused"}, 50)...)
		if len(lines) != 50 {
			t.Fatalf("%d lines logged at debug, want 50", len(lines))
		}
		for i, l := range lines[1:] {
			if l.Level != "DEBUG" || l.Path != "/refused" || l.Status != http.StatusServiceUnavailable {
				t.Errorf("line %d = %+v, want a DEBUG line of the refusal", i+1, l)
			}
		}
	})
}
