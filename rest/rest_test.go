package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

type body struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, ct, in string
		want         fault.Kind
		ok           bool
	}{
		{"valid", "application/json", `{"name":"a","count":1}`, 0, true},
		{"valid with charset", "application/json; charset=utf-8", `{"name":"a"}`, 0, true},
		{"no content type", "", `{"name":"a"}`, 0, true},
		{"problem+json", "application/merge-patch+json", `{"name":"a"}`, 0, true},
		{"form", "application/x-www-form-urlencoded", `{"name":"a"}`, fault.Invalid, false},
		{"empty", "application/json", ``, fault.Invalid, false},
		{"truncated", "application/json", `{"name":`, fault.Invalid, false},
		{"syntax", "application/json", `{"name" "a"}`, fault.Invalid, false},
		{"wrong type", "application/json", `{"count":"many"}`, fault.Invalid, false},
		{"array", "application/json", `[1,2]`, fault.Invalid, false},
		{"unknown field", "application/json", `{"nmae":"a"}`, fault.Invalid, false},
		{"two objects", "application/json", `{"name":"a"}{"name":"b"}`, fault.Invalid, false},
		{"trailing garbage", "application/json", `{"name":"a"} x`, fault.Invalid, false},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", 200) + `"}`, fault.TooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", strings.NewReader(tt.in))
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			var b body
			err := rest.Decode(httptest.NewRecorder(), req, 128, &b)
			if tt.ok != (err == nil) || (!tt.ok && fault.KindOf(err) != tt.want) {
				t.Errorf("Decode(%q) = %v, want ok=%v kind %v", tt.in, err, tt.ok, tt.want)
			}
			if !tt.ok && fault.Message(err) == "internal error" {
				t.Errorf("Decode(%q) error has no caller-facing message", tt.in)
			}
		})
	}
}

func TestErrorWritesProblemAndHidesInternals(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		err        error
		status     int
		code, text string
	}{
		{fault.New(fault.NotFound, "no order 7"), 404, "not_found", "no order 7"},
		{fault.New(fault.Invalid, "bad sku"), 400, "invalid", "bad sku"},
		{fault.New(fault.Unauthorized, "token expired"), 401, "unauthorized", "token expired"},
		{fault.Wrap(fault.Unavailable, io.EOF, "user-service is unavailable"), 503, "unavailable", "user-service is unavailable"},
		{fault.New(fault.Timeout, "inventory-service timed out"), 504, "timeout", "inventory-service timed out"},
		{io.ErrUnexpectedEOF, 500, "internal", "internal error"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/orders/7", nil)
		rest.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rest.Error(w, r, log, tt.err) })).ServeHTTP(rec, req)
		var p rest.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tt.status || p.Status != tt.status || p.Code != tt.code || p.Detail != tt.text || p.RequestID == "" || p.Instance != "/api/orders/7" {
			t.Errorf("Error(%v) = %d %+v, want %d %s %q", tt.err, rec.Code, p, tt.status, tt.code, tt.text)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if p.Type != "/problems/"+tt.code {
			t.Errorf("Error(%v): type %q, want /problems/%s", tt.err, p.Type, tt.code)
		}
		if ra, want := rec.Header().Get("Retry-After"), tt.status == 503 || tt.status == 504; (ra == "1") != want {
			t.Errorf("Error(%v): Retry-After = %q, want it on a 503 or 504 only", tt.err, ra)
		}
	}
}

func TestRequestIDKeepsAWellFormedOne(t *testing.T) {
	var seen string
	h := rest.RequestID(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r.Header.Get(rest.RequestIDHeader) }))
	for in, keep := range map[string]bool{"abc-123": true, "": false, strings.Repeat("x", 129): false, "has space": false} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set(rest.RequestIDHeader, in)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if (seen == in) != keep || seen == "" || rec.Header().Get(rest.RequestIDHeader) != seen {
			t.Errorf("incoming id %.10q: handler saw %.10q, response %.10q; keep=%v", in, seen, rec.Header().Get(rest.RequestIDHeader), keep)
		}
	}
}

func TestRecoverAnswers500(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := rest.Recover(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("after a panic: %d %s, want a 500 that does not leak the panic", rec.Code, rec.Body)
	}
}

func TestDeadlineTravelsAndExpiredWorkIsNotStarted(t *testing.T) {
	var got time.Time
	var has, called bool
	h := rest.Deadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		got, has = r.Context().Deadline()
	}))
	future := time.Now().Add(time.Minute).Truncate(time.Nanosecond)
	tests := []struct {
		name, header string
		wantCalled   bool
		wantDeadline bool
		status       int
	}{
		{"none", "", true, false, 200},
		{"future", strconv.FormatInt(future.UnixNano(), 10), true, true, 200},
		{"past", strconv.FormatInt(time.Now().Add(-time.Second).UnixNano(), 10), false, false, 504},
		{"malformed", "soon", true, false, 200},
	}
	for _, tt := range tests {
		called, has = false, false
		req := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			req.Header.Set(rest.DeadlineHeader, tt.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if called != tt.wantCalled || has != tt.wantDeadline || rec.Code != tt.status {
			t.Errorf("%s: called %v, deadline %v, status %d; want %v, %v, %d", tt.name, called, has, rec.Code, tt.wantCalled, tt.wantDeadline, tt.status)
		}
		if tt.wantDeadline && !got.Equal(future) {
			t.Errorf("%s: deadline %v, want %v", tt.name, got, future)
		}
	}
}

func TestSetDeadline(t *testing.T) {
	h := http.Header{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rest.SetDeadline(h, ctx)
	d, _ := ctx.Deadline()
	if h.Get(rest.DeadlineHeader) != strconv.FormatInt(d.UnixNano(), 10) {
		t.Errorf("header = %q, want the context's deadline", h.Get(rest.DeadlineHeader))
	}
}

// TestEveryKindHasAProblemPage: the type of every error a kind maps to
// resolves to a page about it.
func TestEveryKindHasAProblemPage(t *testing.T) {
	h := rest.Routes(http.NewServeMux())
	for k := fault.Internal; k <= fault.RateLimited; k++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", rest.TypeURI(rest.Code(k)), nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), rest.Code(k)) || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			t.Errorf("GET %s = %d %q, want a page about it", rest.TypeURI(rest.Code(k)), rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/problems/no_such_code", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /problems/no_such_code = %d, want 404", rec.Code)
	}
}

// TestRoutesAnswersUnroutedRequestsWithProblems: a wrong method on a known
// path is 405 with Allow, an unknown path 404, both problem documents.
func TestRoutesAnswersUnroutedRequestsWithProblems(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "id "+r.PathValue("id")) }
	mux.HandleFunc("GET /api/orders/{id}", ok)
	mux.HandleFunc("POST /api/orders/{id}/cancel", ok)
	mux.HandleFunc("POST /api/orders", ok)
	mux.HandleFunc("GET /api/orders", ok)
	h := rest.Routes(mux)
	tests := []struct {
		method, path string
		status       int
		allow, code  string
	}{
		{"GET", "/api/orders/7", 200, "", ""},
		{"HEAD", "/api/orders/7", 200, "", ""},
		{"DELETE", "/api/orders/7", 405, "GET, HEAD", "method_not_allowed"},
		{"GET", "/api/orders/7/cancel", 405, "POST", "method_not_allowed"},
		{"PUT", "/api/orders", 405, "GET, HEAD, POST", "method_not_allowed"},
		{"GET", "/api/nothing", 404, "", "not_found"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.status || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d Allow %q, want %d Allow %q", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), tt.status, tt.allow)
			continue
		}
		if tt.code == "" {
			if tt.method == "GET" && rec.Body.String() != "id 7" {
				t.Errorf("%s %s = %q, want the route's answer with its path value", tt.method, tt.path, rec.Body.String())
			}
			continue
		}
		var p rest.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != tt.code || p.Type != "/problems/"+tt.code {
			t.Errorf("%s %s: body %q, want a %s problem document", tt.method, tt.path, rec.Body.String(), tt.code)
		}
	}
}

// TestServeClosesConnectionsWithoutARequest: a shutdown does not wait its
// whole grace for a connection that never began a request (a TLS dial
// that outlived its request leaves one), while a request in flight still
// finishes.
func TestServeClosesConnectionsWithoutARequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	srv := rest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	}), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rest.Serve(ctx, srv, ln, time.Minute) }()

	idle, err := net.Dial("tcp", ln.Addr().String()) // connected, silent
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			answer <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- string(b)
	}()
	<-started
	cancel()
	// The silent connection is closed by the server...
	// (within 3 s: http.Server alone would hold it 5 s, then count it idle)
	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the silent connection: read = %v, want EOF (closed by the server)", err)
	}
	// ...while the request in flight finishes.
	close(release)
	if got := <-answer; got != "done" {
		t.Errorf("the request in flight got %q, want done", got)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestErrorLogQuietsRefusedHandshakes(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := rest.ErrorLog(log)
	l.Printf("http: TLS handshake error from 127.0.0.1:5555: remote error: tls: certificate required")
	l.Printf("http: Accept error: too many open files; retrying in 5ms")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"level":"DEBUG"`) || !strings.Contains(lines[1], `"level":"WARN"`) {
		t.Errorf("ErrorLog wrote %q, want the handshake at debug and the rest at warn", lines)
	}
}

func TestSetRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {300 * time.Millisecond, "1"}, {time.Second, "1"}, {1200 * time.Millisecond, "2"}, {3 * time.Second, "3"}} {
		rec := httptest.NewRecorder()
		rest.SetRetryAfter(rec, tt.d)
		if got := rec.Header().Get("Retry-After"); got != tt.want {
			t.Errorf("SetRetryAfter(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestDeadlineTwice: Deadline earlier in the chain bounds the request
// once; a second one keeps that bound, and a context bounded later than
// the header is bounded by the header.
func TestDeadlineTwice(t *testing.T) {
	d := time.Now().Add(time.Minute).Truncate(time.Nanosecond)
	var seen time.Time
	h := rest.Deadline(rest.Deadline(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen, _ = r.Context().Deadline()
	})))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set(rest.DeadlineHeader, strconv.FormatInt(d.UnixNano(), 10))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !seen.Equal(d) {
		t.Errorf("twice: deadline %v, want the header's %v", seen, d)
	}
	later, cancel := context.WithDeadline(context.Background(), d.Add(time.Hour))
	defer cancel()
	h.ServeHTTP(httptest.NewRecorder(), req.WithContext(later))
	if !seen.Equal(d) {
		t.Errorf("under a later deadline: %v, want the header's %v", seen, d)
	}
}
