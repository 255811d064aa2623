// Package resilience wraps every outbound call to one dependency in the
// same visible stack of failsafe-go policies, outermost first:
//
//	retry (backoff, jitter, a retry budget)  ->  circuit breaker  ->  bulkhead  ->  timeout per attempt
//
// Only faults count: an error classified fault.Unavailable or fault.Timeout
// (or a gRPC status that means the same) is retried and counts against the
// breaker. A business answer (not found, invalid, forbidden, conflict) is
// returned at once, is never retried and never trips the breaker.
package resilience

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/junction-go/junction/fault"
)

// Config describes the protection of one dependency.
type Config struct {
	// Name is the dependency's name, in logs, errors and counts.
	Name string
	// Timeout bounds each attempt (within the caller's own deadline).
	Timeout time.Duration
	// MaxAttempts is the most calls per operation, retries included; 1
	// turns retrying off. Only idempotent operations may use more than 1.
	MaxAttempts int
	// Backoff is the first delay between attempts; it doubles up to
	// MaxBackoff, with ±25% jitter.
	Backoff, MaxBackoff time.Duration
	// RetryBudget is the largest share of calls in flight that may be
	// retries (0.2: at most one in five), so retries cannot multiply load
	// on a dependency that is already failing.
	RetryBudget float64
	// BreakAfter consecutive faults open the breaker; it stays open for
	// BreakFor, then lets probes through (half-open) and closes after
	// two successes.
	BreakAfter uint
	BreakFor   time.Duration
	// MaxConcurrent bounds the calls in flight (bulkhead); 0 for none.
	MaxConcurrent uint
	// IsTransient tells a transient failure of the dependency (worth a
	// retry, counted by the breaker) from a business answer; the package's
	// IsTransient when nil.
	IsTransient func(error) bool
	Log         *slog.Logger
}

// WorstCase is the longest one operation can take under c when every
// attempt runs into its timeout: MaxAttempts timeouts plus the longest
// backoffs between them (jitter included). It is the figure to fit inside
// the deadline of whatever waits for the operation. Without a Timeout
// there is no bound, and WorstCase is 0.
func (c Config) WorstCase() time.Duration {
	if c.Timeout <= 0 {
		return 0
	}
	attempts := max(c.MaxAttempts, 1)
	total := time.Duration(attempts) * c.Timeout
	wait := c.Backoff
	for range attempts - 1 {
		total += wait + wait/4
		wait = min(wait*2, max(c.MaxBackoff, c.Backoff))
	}
	return total
}

// Stats counts what the policies did.
type Stats struct {
	Calls, Retries, BreakerOpened, BreakerHalfOpened, BreakerClosed, Rejected int64
}

// Transition is a change of the breaker's state.
type Transition struct {
	To string    // "open", "half-open" or "closed"
	At time.Time // when it happened
}

// maxTransitions is how many transitions a Policy remembers.
const maxTransitions = 256

// Policy protects calls to one dependency. It is safe for concurrent use.
type Policy struct {
	cfg     Config
	exec    failsafe.Executor[any]
	breaker circuitbreaker.CircuitBreaker[any]

	calls, retries, opened, halfOpened, closed, rejected atomic.Int64

	mu          sync.Mutex
	transitions []Transition
}

func (p *Policy) record(to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.transitions) == maxTransitions {
		p.transitions = append(p.transitions[:0], p.transitions[1:]...)
	}
	p.transitions = append(p.transitions, Transition{To: to, At: time.Now()})
}

// Transitions returns the breaker's last state changes (up to 256), oldest
// first.
func (p *Policy) Transitions() []Transition {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.transitions)
}

// IsTransient reports whether err is a transient failure of the dependency (unavailable,
// timed out) rather than an answer.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, timeout.ErrExceeded) {
		return true
	}
	switch fault.KindOf(err) {
	case fault.Unavailable, fault.Timeout:
		return true
	}
	return false
}

// New builds the policy stack of cfg.
func New(cfg Config) *Policy {
	if cfg.IsTransient == nil {
		cfg.IsTransient = IsTransient
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = 1
	}
	p := &Policy{cfg: cfg}
	handle := func(_ any, err error) bool { return cfg.IsTransient(err) }
	var policies []failsafe.Policy[any]
	if cfg.MaxAttempts > 1 {
		rb := retrypolicy.NewBuilder[any]().
			HandleIf(handle).
			WithMaxAttempts(cfg.MaxAttempts).
			WithBackoff(cfg.Backoff, max(cfg.MaxBackoff, cfg.Backoff)).
			WithJitterFactor(0.25).
			ReturnLastFailure().
			OnRetry(func(e failsafe.ExecutionEvent[any]) {
				p.retries.Add(1)
				cfg.Log.Info("retrying", "dependency", cfg.Name, "attempt", e.Attempts()+1, "err", e.LastError())
			})
		if cfg.RetryBudget > 0 {
			rb = rb.WithBudget(budget.NewBuilder().WithMaxRate(cfg.RetryBudget).WithMinConcurrency(1).Build())
		}
		policies = append(policies, rb.Build())
	}
	if cfg.BreakAfter > 0 {
		p.breaker = circuitbreaker.NewBuilder[any]().
			HandleIf(handle).
			WithFailureThreshold(cfg.BreakAfter).
			WithDelay(cfg.BreakFor).
			WithSuccessThreshold(2).
			OnOpen(func(circuitbreaker.StateChangedEvent) {
				p.opened.Add(1)
				p.record("open")
				cfg.Log.Warn("circuit breaker opened", "dependency", cfg.Name, "for", cfg.BreakFor)
			}).
			OnHalfOpen(func(circuitbreaker.StateChangedEvent) {
				p.halfOpened.Add(1)
				p.record("half-open")
				cfg.Log.Info("circuit breaker half-open", "dependency", cfg.Name)
			}).
			OnClose(func(circuitbreaker.StateChangedEvent) {
				p.closed.Add(1)
				p.record("closed")
				cfg.Log.Info("circuit breaker closed", "dependency", cfg.Name)
			}).
			Build()
		policies = append(policies, p.breaker)
	}
	if cfg.MaxConcurrent > 0 {
		policies = append(policies, bulkhead.New[any](cfg.MaxConcurrent))
	}
	if cfg.Timeout > 0 {
		policies = append(policies, timeout.New[any](cfg.Timeout))
	}
	p.exec = failsafe.With(policies...)
	return p
}

// Do runs fn under the policies. A call refused by the open breaker, the
// full bulkhead or the spent retry budget, or still failing after its
// attempts, is a fault.Unavailable (or fault.Timeout) naming the
// dependency; a business answer comes back unchanged.
func (p *Policy) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	p.calls.Add(1)
	err := p.exec.WithContext(ctx).RunWithExecution(func(e failsafe.Execution[any]) error {
		return fn(e.Context())
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, circuitbreaker.ErrOpen):
		p.rejected.Add(1)
		return fault.Wrap(fault.Unavailable, err, "%s is unavailable (circuit open); try again shortly", p.cfg.Name)
	case errors.Is(err, bulkhead.ErrFull), errors.Is(err, budget.ErrExceeded):
		p.rejected.Add(1)
		return fault.Wrap(fault.Unavailable, err, "%s is busy; try again shortly", p.cfg.Name)
	case errors.Is(err, timeout.ErrExceeded):
		return fault.Wrap(fault.Timeout, err, "%s timed out", p.cfg.Name)
	}
	return err
}

// Stats returns the counts so far.
func (p *Policy) Stats() Stats {
	return Stats{Calls: p.calls.Load(), Retries: p.retries.Load(), BreakerOpened: p.opened.Load(), BreakerHalfOpened: p.halfOpened.Load(), BreakerClosed: p.closed.Load(), Rejected: p.rejected.Load()}
}

// BreakerState returns "closed", "open" or "half-open" ("none" without a
// breaker).
func (p *Policy) BreakerState() string {
	if p.breaker == nil {
		return "none"
	}
	switch p.breaker.State() {
	case circuitbreaker.OpenState:
		return "open"
	case circuitbreaker.HalfOpenState:
		return "half-open"
	}
	return "closed"
}
