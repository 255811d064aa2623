package rest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/junction-go/junction/telemetry"
)

// RequestIDHeader carries the id of a request across every hop.
const RequestIDHeader = "X-Request-Id"

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies mw to h so that the first middleware is the outermost.
func Chain(h http.Handler, mw ...Middleware) http.Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// RequestID takes the request id from the incoming header when it is
// well-formed (1 to 128 printable ASCII characters), makes a new one
// otherwise, and puts it in the context, the request header (so proxies
// forward it) and the response header.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = NewRequestID()
			r.Header.Set(RequestIDHeader, id)
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(telemetry.WithRequestID(r.Context(), id)))
	})
}

// NewRequestID returns a random 128-bit id in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Recover turns a panic in a handler into a logged 500 problem, so one bad
// request never takes the process down. http.ErrAbortHandler is re-raised, as
// net/http expects.
func Recover(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
					WriteProblem(w, r, http.StatusInternalServerError, "internal", "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// AccessLog logs one line per request with its status, size and duration.
// Probes of /healthz and /readyz are not logged.
//
// Refusals (429 or 503 with Retry-After: "come back later", which under
// overload is most answers) are sampled: the first of each second is
// logged at info, with unlogged_refusals, how many came since the one
// before it; the rest are logged at debug. At ten times the shop's capacity
// a line for each was a thousand lines a second that drowned everything
// else the log said, and 8 % of the gateway's CPU. Every refusal is
// counted and timed in the HTTP metrics (http_server_refusal_duration_seconds).
func AccessLog(log *slog.Logger) Middleware {
	refusals := &sampler{every: time.Second}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			rec := telemetry.NewResponseRecorder(w)
			next.ServeHTTP(rec, r)
			status := rec.Status()
			level, sampled := slog.LevelInfo, false
			var unlogged int64
			if telemetry.Refusal(status, w.Header()) {
				if unlogged, sampled = refusals.sample(time.Now()); !sampled {
					level = slog.LevelDebug
				}
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status,
				"bytes", rec.Bytes(), "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
			if sampled {
				attrs = append(attrs, "unlogged_refusals", unlogged)
			}
			log.Log(r.Context(), level, "request", attrs...)
		})
	}
}

// sampler lets the first event of each period through and counts the
// rest until the next one.
type sampler struct {
	every time.Duration

	mu       sync.Mutex
	next     time.Time
	unlogged int64
}

// sample tells whether the event at now is the first of its period and,
// when it is, how many came since the first of the period before.
func (s *sampler) sample(now time.Time) (unlogged int64, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.unlogged++
		return 0, false
	}
	unlogged, s.unlogged, s.next = s.unlogged, 0, now.Add(s.every)
	return unlogged, true
}

// DeadlineHeader carries the time by which the caller needs the answer, as
// Unix nanoseconds, from the gateway to every service behind it.
const DeadlineHeader = "X-Request-Deadline"

// SetDeadline writes ctx's deadline, if any, into h.
func SetDeadline(h http.Header, ctx interface{ Deadline() (time.Time, bool) }) {
	if d, ok := ctx.Deadline(); ok {
		h.Set(DeadlineHeader, strconv.FormatInt(d.UnixNano(), 10))
	}
}

// Deadline applies the caller's deadline from DeadlineHeader to the
// request's context (never extending one it has already), so every call
// made on its behalf inherits it; a request whose deadline has passed is
// not started and is answered 504. A malformed header is ignored.
func Deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns, err := strconv.ParseInt(r.Header.Get(DeadlineHeader), 10, 64)
		if err != nil || ns <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		d := time.Unix(0, ns)
		if !time.Now().Before(d) {
			WriteProblem(w, r, http.StatusGatewayTimeout, "deadline_exceeded", "the request's deadline passed before work began")
			return
		}
		if cur, ok := r.Context().Deadline(); ok && !cur.After(d) {
			next.ServeHTTP(w, r) // bounded already (Deadline earlier in the chain)
			return
		}
		ctx, cancel := context.WithDeadline(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
