package resilience_test

import (
	"context"
	"fmt"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/resilience"
)

// One dependency's protection in one visible block: a fault is retried
// with backoff and counts against the breaker; a business answer ("not
// found") comes back at once and is neither retried nor counted.
func Example() {
	cfg := resilience.Config{
		Name:        "user-service",
		Timeout:     time.Second,
		MaxAttempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, RetryBudget: 0.2,
		BreakAfter: 5, BreakFor: 5 * time.Second,
	}
	policy := resilience.New(cfg)
	ctx := context.Background()

	calls := 0
	err := policy.Do(ctx, func(context.Context) error {
		calls++
		if calls < 3 {
			return fault.New(fault.Unavailable, "connection refused")
		}
		return nil
	})
	fmt.Println("flaky dependency:", err, "after", calls, "calls")

	calls = 0
	err = policy.Do(ctx, func(context.Context) error {
		calls++
		return fault.New(fault.NotFound, "no user 42")
	})
	fmt.Println("business answer:", err, "after", calls, "call")
	fmt.Println("breaker:", policy.BreakerState())
	fmt.Println("worst case of one call:", cfg.WorstCase())
	// Output:
	// flaky dependency: <nil> after 3 calls
	// business answer: no user 42 after 1 call
	// breaker: closed
	// worst case of one call: 3.0375s
}
