package rest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
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
func AccessLog(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			rec := telemetry.NewResponseRecorder(w)
			next.ServeHTTP(rec, r)
			log.InfoContext(r.Context(), "request",
				"method", r.Method, "path", r.URL.Path, "status", rec.Status(),
				"bytes", rec.Bytes(), "duration_ms", float64(time.Since(start).Microseconds())/1000)
		})
	}
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
