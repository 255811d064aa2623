package resilience

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/rest"
)

// Priority says which work a busy server refuses first: the lowest first.
// It travels with a request from hop to hop, as failsafe-go carries it:
// the X-Failsafe-Level (or X-Failsafe-Priority) header over HTTP, the
// x-failsafe-level metadata over gRPC, set by its client round tripper
// (failsafehttp.NewRoundTripperWithLevel) and interceptor
// (failsafegrpc.NewUnaryClientInterceptorWithLevel) from the context.
type Priority = priority.Priority

// The priorities of the shop's work.
const (
	// PriorityNew is new work and what its acceptance needs: a new order,
	// the user and stock checks made before it is taken.
	PriorityNew = priority.Low
	// PriorityDefault is work that says nothing of itself: browsing,
	// signing in, a call from outside the shop's flows.
	PriorityDefault = priority.Medium
	// PriorityAdmitted is work for what the shop has already taken: an
	// order's status read, its cancellation, its saga's commands and
	// replies. It is refused only after all new work is.
	PriorityAdmitted = priority.High
)

// WithPriority returns ctx carrying p, for the server limits of every hop
// the work goes through.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return priority.ContextWithPriority(ctx, p)
}

// SetPriority puts p in h, for the server limit of the service the
// request goes to, in place of whatever level or priority h carried (a
// client of the shop's edge does not choose its own).
func SetPriority(h http.Header, p Priority) {
	h.Del(levelHeader)
	h.Set(priorityHeader, strconv.Itoa(int(p)))
}

// levels is how many levels failsafe-go's prioritizer knows (0-499); each
// priority is a hundred of them.
const levels = 500

// withLevel returns ctx carrying the level of its work and that level:
// the one the wire gave (levelText, else prioText), else the one ctx
// already carries, else one of PriorityDefault's.
func withLevel(ctx context.Context, levelText, prioText string) (context.Context, int) {
	level := parseLevel(levelText, prioText)
	if level < 0 {
		if level = priority.LevelFromContext(ctx); level < 0 || level >= levels {
			level = PriorityDefault.RandomLevel()
		}
	}
	return priority.ContextWithLevel(ctx, level), level
}

// parseLevel reads a level ("0"-"499") or a priority ("0"-"4") from the
// wire; anything else is no level at all (-1), never a panic further on.
func parseLevel(level, prio string) int {
	if level != "" {
		if l, err := strconv.Atoi(level); err == nil && l >= 0 && l < levels {
			return l
		}
		return -1
	}
	if prio != "" {
		if p, err := strconv.Atoi(prio); err == nil && p >= int(priority.VeryLow) && p <= int(priority.VeryHigh) {
			return priority.Priority(p).RandomLevel()
		}
	}
	return -1
}

// ServerLimitConfig shapes a ServerLimit. The zero value is the shipped one.
type ServerLimitConfig struct {
	// Name names the limit in its logs.
	Name string
	// MinLimit, MaxLimit and InitialLimit bound the adaptive limit on work
	// in flight; failsafe-go's defaults (1, 200, 20) when zero.
	MinLimit, MaxLimit, InitialLimit uint
	// CalibrateEvery is how often the prioritizer recomputes which levels
	// are refused; every 200 ms when zero.
	CalibrateEvery time.Duration
	// RetryAfter is the wait a refusal asks for; 1 s when zero.
	RetryAfter time.Duration
	Log        *slog.Logger
}

// ServerLimit is one process's admission of work, shared by its HTTP and
// gRPC servers and its message consumers: failsafe-go's adaptive
// concurrency limit (it follows the work's measured time: when recent times
// rise against their baseline the limit comes down, when they do not it
// may grow) with a queue of up to twice the limit behind it, and a
// prioritizer. While work queues past that, the lowest levels among the
// recent work are refused, so new work is refused before work for what was
// already taken; past three times the limit every request is refused at
// once.
//
// A refused request costs its refusal only: HTTP gets 503 overloaded with
// Retry-After, gRPC UNAVAILABLE. A message is never refused (it is work
// the shop already took, and the broker would only bring it back): it waits
// for a permit, so a busy process takes fewer messages from the broker,
// and one past its deadline while it waited is dropped by the consumer's
// SkipExpired as any other.
//
// A request that says nothing of its priority is PriorityDefault. It is
// safe for concurrent use; Close stops its calibrations.
type ServerLimit struct {
	limiter     adaptivelimiter.PriorityLimiter[any]
	prioritizer priority.Prioritizer
	stop        context.CancelFunc // ends run
	retryAfter  time.Duration
	log         *slog.Logger

	refused, admitted [priority.VeryHigh + 1]atomic.Int64
	// waiting counts the messages waiting for a permit past the queue.
	waiting atomic.Int64
}

// NewServerLimit returns a running ServerLimit.
func NewServerLimit(cfg ServerLimitConfig) *ServerLimit {
	if cfg.CalibrateEvery <= 0 {
		cfg.CalibrateEvery = 200 * time.Millisecond
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := adaptivelimiter.NewPrioritizer()
	b := adaptivelimiter.NewBuilder[any]().WithQueueing(2, 3)
	if cfg.MaxLimit > 0 || cfg.MinLimit > 0 || cfg.InitialLimit > 0 {
		lo, hi, init := max(cfg.MinLimit, 1), cfg.MaxLimit, cfg.InitialLimit
		if hi == 0 {
			hi = 200
		}
		if init == 0 {
			init = 20
		}
		// A floor above the ceiling raises the ceiling; the start lies
		// between them.
		hi = max(hi, lo)
		b = b.WithLimits(lo, hi, min(max(init, lo), hi))
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &ServerLimit{
		limiter:     b.BuildPrioritized(p),
		prioritizer: p,
		stop:        stop,
		retryAfter:  cfg.RetryAfter,
		log:         cfg.Log.With("server_limit", cfg.Name),
	}
	go l.run(ctx, cfg.CalibrateEvery)
	return l
}

// Close stops the limit's calibrations.
func (l *ServerLimit) Close() { l.stop() }

// run calibrates the prioritizer every interval and, once a second in
// which it refused work, says so in one line: what it refused by
// priority, and the limit and queue it refused at.
func (l *ServerLimit) run(ctx context.Context, every time.Duration) {
	calibrate, report := time.NewTicker(every), time.NewTicker(time.Second)
	defer calibrate.Stop()
	defer report.Stop()
	var last [priority.VeryHigh + 1]int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-calibrate.C:
			l.prioritizer.Calibrate()
		case <-report.C:
			st := l.Stats()
			if st.Refused == last {
				continue
			}
			l.log.Info("work refused in the last second: this service has as much as it can finish in time",
				"new", st.Refused[PriorityNew]-last[PriorityNew], "default", st.Refused[PriorityDefault]-last[PriorityDefault],
				"admitted", st.Refused[PriorityAdmitted]-last[PriorityAdmitted],
				"other", st.Refused[priority.VeryLow]-last[priority.VeryLow]+st.Refused[priority.VeryHigh]-last[priority.VeryHigh],
				"limit", st.Limit, "in_flight", st.InFlight, "queued", st.Queued)
			last = st.Refused
		}
	}
}

// ServerLimitStats is what a ServerLimit is doing.
type ServerLimitStats struct {
	Limit, InFlight, Queued int
	// Threshold is the level (0-499) below which work is refused now; 0
	// while nothing is.
	Threshold int
	// Refused and Admitted count the refusals and the work let in, by
	// priority (VeryLow to VeryHigh).
	Refused, Admitted [priority.VeryHigh + 1]int64
	// MessagesWaiting are the deliveries waiting for room in the queue.
	MessagesWaiting int
}

// Stats returns l's figures now.
func (l *ServerLimit) Stats() ServerLimitStats {
	st := ServerLimitStats{
		Limit: l.limiter.Limit(), InFlight: l.limiter.Inflight(), Queued: l.limiter.Queued(),
		Threshold:       l.prioritizer.RejectionThreshold(),
		MessagesWaiting: int(l.waiting.Load()),
	}
	for i := range st.Refused {
		st.Refused[i], st.Admitted[i] = l.refused[i].Load(), l.admitted[i].Load()
	}
	return st
}

// errRefused is a refusal's cause, for the callers' logs.
var errRefused = errors.New("refused: this server has as much work queued as it takes")

// admit takes a permit at level, waiting in the queue as long as ctx lets
// it, or refuses.
func (l *ServerLimit) admit(ctx context.Context, level int) (adaptivelimiter.Permit, error) {
	p, err := l.limiter.AcquirePermitWithLevel(ctx, level)
	if errors.Is(err, adaptivelimiter.ErrExceeded) {
		l.refused[level/100].Add(1)
		return nil, errRefused
	}
	if err == nil {
		l.admitted[level/100].Add(1)
	}
	return p, err
}

// HTTP returns the middleware that admits each request through l at the
// level its headers carry (PriorityDefault without one), with that level in
// its context for the calls it makes. exempt, when not nil, picks requests
// that are not work to measure (a long poll, whose time is the client's
// wait): they go through untouched.
func (l *ServerLimit) HTTP(exempt func(*http.Request) bool) rest.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if exempt != nil && exempt(r) {
				next.ServeHTTP(w, r)
				return
			}
			ctx, level := withLevel(r.Context(), r.Header.Get(levelHeader), r.Header.Get(priorityHeader))
			p, err := l.admit(ctx, level)
			if err != nil {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					rest.WriteProblem(w, r, http.StatusGatewayTimeout, "deadline_exceeded", "the request's deadline passed while it waited for its turn")
					return
				}
				if ctx.Err() != nil {
					return // the caller left while it waited
				}
				l.log.DebugContext(ctx, "request refused", "path", r.URL.Path, "level", level, "err", err)
				rest.SetRetryAfter(w, l.retryAfter)
				rest.WriteProblem(w, r, http.StatusServiceUnavailable, "overloaded", "this service has as much work as it can finish in time; try again in a moment")
				return
			}
			defer p.Record()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// The wire names of a level and a priority, as failsafe-go's clients send
// them.
const (
	levelHeader    = "X-Failsafe-Level"
	priorityHeader = "X-Failsafe-Priority"
	levelMD        = "x-failsafe-level"
	priorityMD     = "x-failsafe-priority"
)

// UnaryServerInterceptor admits each unary call through l at the level its
// metadata carries (PriorityDefault without one), with that level in its
// context. Health checks are not work: they go through.
func (l *ServerLimit) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.Health/") {
			return h(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		ctx, level := withLevel(ctx, first(md.Get(levelMD)), first(md.Get(priorityMD)))
		p, err := l.admit(ctx, level)
		if err != nil {
			if ctx.Err() != nil {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			l.log.DebugContext(ctx, "call refused", "method", info.FullMethod, "level", level, "err", err)
			return nil, status.Error(codes.Unavailable, "this service has as much work as it can finish in time; try again in a moment")
		}
		defer p.Record()
		return h(ctx, req)
	}
}

// pause waits d, counted among the messages waiting, or until ctx ends.
func (l *ServerLimit) pause(ctx context.Context, d time.Duration) error {
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Messages returns h with each delivery admitted through l at
// PriorityAdmitted's highest level: it waits for a permit rather than
// being refused, trying again every RetryAfter/10 while l's queue is full,
// until ctx ends (the subscription stops, and the message is redelivered).
// A message with a deadline (bus.Deadline) waits no longer than that: then
// it goes to h without a permit, for the consumer's SkipExpired to drop
// it. A message's time in h counts toward l's limit like a request's.
func (l *ServerLimit) Messages(h bus.Handler) bus.Handler {
	level := PriorityAdmitted.MaxLevel()
	pause := l.retryAfter / 10
	return func(ctx context.Context, m *bus.Message) error {
		wctx := ctx
		if d, ok := bus.Deadline(m); ok {
			var cancel context.CancelFunc
			wctx, cancel = context.WithDeadline(ctx, d)
			defer cancel()
		}
		for {
			p, err := l.limiter.AcquirePermitWithLevel(wctx, level)
			if err == nil {
				l.admitted[level/100].Add(1)
				defer p.Record()
				return h(priority.ContextWithLevel(ctx, level), m)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if wctx.Err() != nil {
				return h(ctx, m) // past its deadline: not work any more
			}
			if err := l.pause(wctx, pause); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}
