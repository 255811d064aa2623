package resilience_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/resilience"
)

var (
	down     = fault.New(fault.Unavailable, "connection refused")
	notFound = fault.New(fault.NotFound, "no user 7")
)

func TestRetriesFaultsNotAnswers(t *testing.T) {
	p := resilience.New(resilience.Config{Name: "dep", MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return down
		}
		return nil
	})
	if err != nil || calls != 3 || p.Stats().Retries != 2 {
		t.Errorf("a fault twice, then success: err %v after %d calls, %d retries; want nil after 3, 2 retries", err, calls, p.Stats().Retries)
	}
	calls = 0
	err = p.Do(context.Background(), func(context.Context) error { calls++; return notFound })
	if !fault.Is(err, fault.NotFound) || calls != 1 {
		t.Errorf("a business answer: err %v after %d calls; want it at once", err, calls)
	}
	calls = 0
	err = p.Do(context.Background(), func(context.Context) error { calls++; return down })
	if !fault.Is(err, fault.Unavailable) || calls != 3 {
		t.Errorf("a lasting fault: err %v after %d calls; want unavailable after 3", err, calls)
	}
}

func TestBreakerOpensOnFaultsOnlyAndRecovers(t *testing.T) {
	p := resilience.New(resilience.Config{Name: "dep", BreakAfter: 3, BreakFor: 20 * time.Millisecond})
	ctx := context.Background()
	for range 10 {
		_ = p.Do(ctx, func(context.Context) error { return notFound })
	}
	if p.BreakerState() != "closed" {
		t.Fatalf("after 10 business answers the breaker is %s; want closed", p.BreakerState())
	}
	calls := 0
	for range 3 {
		_ = p.Do(ctx, func(context.Context) error { calls++; return down })
	}
	err := p.Do(ctx, func(context.Context) error { calls++; return nil })
	if p.BreakerState() != "open" || calls != 3 || !fault.Is(err, fault.Unavailable) {
		t.Fatalf("after 3 faults: breaker %s, dependency called %d times, err %v; want open, 3, unavailable without a call", p.BreakerState(), calls, err)
	}
	// Once the open period passes, probes go through and close it again.
	deadline := time.Now().Add(5 * time.Second)
	for p.BreakerState() != "closed" {
		if time.Now().After(deadline) {
			t.Fatalf("breaker still %s", p.BreakerState())
		}
		_ = p.Do(ctx, func(context.Context) error { return nil })
	}
	if s := p.Stats(); s.BreakerOpened != 1 || s.BreakerClosed != 1 || s.Rejected == 0 {
		t.Errorf("stats %+v; want opened 1, closed 1, some rejected", s)
	}
}

func TestTimeoutPerAttempt(t *testing.T) {
	p := resilience.New(resilience.Config{Name: "slow", Timeout: 20 * time.Millisecond})
	err := p.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a dependency that never answers
		return ctx.Err()
	})
	if !fault.Is(err, fault.Timeout) && !fault.Is(err, fault.Unavailable) {
		t.Errorf("a call that never answers = %v, want a timeout", err)
	}
}

func TestCallerDeadlineWins(t *testing.T) {
	p := resilience.New(resilience.Config{Name: "dep", MaxAttempts: 100, Backoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	calls := 0
	err := p.Do(ctx, func(context.Context) error { calls++; return down })
	if err == nil || calls >= 100 {
		t.Errorf("retries past the caller's deadline: err %v after %d calls", err, calls)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestWorstCase(t *testing.T) {
	tests := []struct {
		cfg  resilience.Config
		want time.Duration
	}{
		{resilience.Config{}, 0},
		{resilience.Config{Timeout: time.Second}, time.Second},
		// 3 timeouts + 100 ms and 200 ms of backoff, each up to 25 % longer.
		{resilience.Config{Timeout: time.Second, MaxAttempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}, 3*time.Second + 125*time.Millisecond + 250*time.Millisecond},
		// The backoff stops doubling at MaxBackoff.
		{resilience.Config{Timeout: time.Second, MaxAttempts: 4, Backoff: 100 * time.Millisecond, MaxBackoff: 150 * time.Millisecond}, 4*time.Second + 125*time.Millisecond + 2*(150*time.Millisecond+150*time.Millisecond/4)},
	}
	for _, tt := range tests {
		if got := tt.cfg.WorstCase(); got != tt.want {
			t.Errorf("%+v.WorstCase() = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}
