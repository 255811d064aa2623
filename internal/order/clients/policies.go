package clients

import (
	"log/slog"
	"time"

	"github.com/junction-go/junction/resilience"
)

// UserServicePolicy protects order-service's calls to user-service. GetUser
// only reads, so it may be retried.
//
//	timeout   1 s per attempt, within the caller's deadline
//	retry     3 attempts, 50 ms doubling to 500 ms with jitter, at most 20% of calls in flight
//	breaker   open after 5 faults in a row, for 5 s; closed after 2 probes succeed
//	bulkhead  64 calls at once
//	fallback  none: an order for a user nobody can vouch for is refused (503)
func UserServicePolicy(log *slog.Logger) resilience.Config {
	return resilience.Config{
		Name:        "user-service",
		Timeout:     time.Second,
		MaxAttempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, RetryBudget: 0.2,
		BreakAfter: 5, BreakFor: 5 * time.Second,
		MaxConcurrent: 64,
		Log:           log,
	}
}
