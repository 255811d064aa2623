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

// InventoryPolicy protects order-service's availability check. It only
// reads and sits on the path of POST /api/orders, so it is short.
//
//	timeout   300 ms per attempt
//	retry     2 attempts, 20 ms, at most 20% of calls in flight
//	breaker   open after 5 faults in a row, for 5 s
//	bulkhead  64 calls at once
//	fallback  order.FallbackUncheckedStock: accept the order and let the
//	          saga's ReserveStock decide
func InventoryPolicy(log *slog.Logger) resilience.Config {
	return resilience.Config{
		Name:        "inventory-service",
		Timeout:     300 * time.Millisecond,
		MaxAttempts: 2, Backoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryBudget: 0.2,
		BreakAfter: 5, BreakFor: 5 * time.Second,
		MaxConcurrent: 64,
		Log:           log,
	}
}
