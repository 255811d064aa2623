package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivethrottler"
	"golang.org/x/time/rate"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry"
)

// Limits protect the gateway and what is behind it. A zero rate turns that
// limit off.
type Limits struct {
	// PerAddress is the requests per second each client address may send,
	// with bursts of AddressBurst.
	PerAddress   float64
	AddressBurst int
	// PerUser is the requests per second each signed-in user may send, with
	// bursts of UserBurst.
	PerUser   float64
	UserBurst int
	// MaxInFlight is the most requests the gateway works on at once; more
	// are shed with 503. Zero means no limit.
	MaxInFlight int64
	// RequestTimeout is the time a request gets from the gateway, retries
	// included; its deadline travels to the service (X-Request-Deadline).
	// Zero means UpstreamTimeout.
	RequestTimeout time.Duration
	// ThrottleNewOrders refuses new orders at the gateway in the measure
	// order-service has been refusing them (throttleNewWork).
	ThrottleNewOrders bool
}

// DefaultLimits are generous: they stop a runaway client, not a busy shop.
var DefaultLimits = Limits{PerAddress: 5000, AddressBurst: 5000, PerUser: 2000, UserBurst: 2000, MaxInFlight: 2048, RequestTimeout: UpstreamTimeout, ThrottleNewOrders: true}

// Validate reports the first limit the gateway cannot use; the error
// begins with the setting's name (rate-per-address, rate-per-user,
// max-in-flight, request-timeout).
func (l Limits) Validate() error {
	switch {
	case l.PerAddress < 0:
		return fmt.Errorf("rate-per-address %v: must not be negative", l.PerAddress)
	case l.PerUser < 0:
		return fmt.Errorf("rate-per-user %v: must not be negative", l.PerUser)
	case l.MaxInFlight < 0:
		return fmt.Errorf("max-in-flight %v: must not be negative", l.MaxInFlight)
	case l.RequestTimeout < 100*time.Millisecond || l.RequestTimeout > 10*time.Minute:
		return fmt.Errorf("request-timeout %v: must be between 100ms and 10m", l.RequestTimeout)
	}
	return nil
}

// WithBursts returns l with bursts of a second's worth of each rate.
func (l Limits) WithBursts() Limits {
	l.AddressBurst = max(1, int(l.PerAddress))
	l.UserBurst = max(1, int(l.PerUser))
	return l
}

// keyedLimiter is a token bucket per key. Idle buckets are dropped when the
// map grows past its cap, so memory stays bounded whatever the clients.
type keyedLimiter struct {
	rate  rate.Limit
	burst int
	cap   int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newKeyedLimiter(perSecond float64, burst int) *keyedLimiter {
	return &keyedLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), cap: 10000, m: map[string]*rate.Limiter{}}
}

// wait returns 0 when key may go now, or how long it should wait.
func (k *keyedLimiter) wait(key string, now time.Time) time.Duration {
	k.mu.Lock()
	lim, ok := k.m[key]
	if !ok {
		if len(k.m) >= k.cap {
			for key, l := range k.m {
				if l.TokensAt(now) >= float64(k.burst) {
					delete(k.m, key) // full again: forgetting it changes nothing
				}
			}
		}
		lim = rate.NewLimiter(k.rate, k.burst)
		k.m[key] = lim
	}
	k.mu.Unlock()
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// passThrough is the middleware of a limit that is off.
func passThrough(next http.Handler) http.Handler { return next }

// limitAddress answers 429 to a client address over its rate.
func limitAddress(l Limits, log *slog.Logger, counter *atomic.Int64) rest.Middleware {
	if l.PerAddress <= 0 {
		return passThrough
	}
	k := newKeyedLimiter(l.PerAddress, l.AddressBurst)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			if d := k.wait("addr:"+host, time.Now()); d > 0 {
				counter.Add(1)
				log.DebugContext(r.Context(), "rate limited", "limit", "address", "address", host)
				rest.SetRetryAfter(w, d)
				rest.WriteProblem(w, r, http.StatusTooManyRequests, "rate_limited", "too many requests from this address; retry later")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// limitUser answers 429 to a signed-in user over their rate. It runs after
// the token check, which put the principal in the context.
func limitUser(l Limits, log *slog.Logger, counter *atomic.Int64) rest.Middleware {
	if l.PerUser <= 0 {
		return passThrough
	}
	k := newKeyedLimiter(l.PerUser, l.UserBurst)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := auth.FromContext(r.Context()); ok {
				if d := k.wait("user:"+strconv.FormatInt(p.UserID, 10), time.Now()); d > 0 {
					counter.Add(1)
					log.DebugContext(r.Context(), "rate limited", "limit", "user", "user_id", p.UserID)
					rest.SetRetryAfter(w, d)
					rest.WriteProblem(w, r, http.StatusTooManyRequests, "rate_limited", "too many requests from your account; retry later")
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// shed answers 503 when more than limit requests are in flight: a gateway
// that queues without bound answers everyone late instead of most on time.
// New orders are shed first, once three quarters of limit are in flight, so
// the last quarter is kept for what orders already taken need (their
// status reads, long polls and cancellations) and for every other request:
// new work is refused before work already accepted is abandoned.
func shed(limit int64, log *slog.Logger, inFlight, counter *atomic.Int64) rest.Middleware {
	if limit <= 0 {
		return passThrough
	}
	limitNew := max(1, limit*3/4)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			if n > limit || n > limitNew && isNewOrder(r) {
				counter.Add(1)
				log.DebugContext(r.Context(), "request shed", "in_flight", n, "max", limit, "new_order", isNewOrder(r))
				rest.WriteProblem(w, r, http.StatusServiceUnavailable, "overloaded", "the shop is busy; retry in a moment")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// isNewOrder tells a request for a new order, the work the gateway
// refuses first.
func isNewOrder(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/api/orders"
}

// priorityOf is the priority r's work has at the services' limits: a new
// order is new work; what orders already taken need (their reads,
// cancellations, shipments, notifications) and operators' requests are
// admitted work; the rest (browsing, signing in) is in between.
func priorityOf(r *http.Request) resilience.Priority {
	switch p := r.URL.Path; {
	case isNewOrder(r):
		return resilience.PriorityNew
	case p == "/api/orders" || strings.HasPrefix(p, "/api/orders/") || strings.HasPrefix(p, "/api/shipments/") ||
		p == "/api/notifications" || strings.HasPrefix(p, "/api/admin/"):
		return resilience.PriorityAdmitted
	default:
		return resilience.PriorityDefault
	}
}

// throttleNewWork refuses new work (new orders) at the gateway, before it
// costs a hop, in the measure the service behind has been refusing it:
// the client-side adaptive throttling of Google's SRE book (failsafe-go's
// adaptivethrottler). Over the last 2 s, of all the new orders the gateway
// was asked for, at most a ninth more than the service took are sent on;
// the rest are refused here at once (503 overloaded, Retry-After), at most
// 95 % of them. As in the book, an order refused here counts among those
// asked for and not taken, so what goes on follows what the service takes,
// however many are offered: at ten times what it takes, the refusals it
// makes itself (a hop each way on a busy machine) are a tenth of what it
// takes, not three times. Nothing else is refused by it: status reads and
// whatever admitted work needs still go through.
//
// Counting its own refusals, the throttle would take half a minute to
// open again once the service takes everything: so when a second has
// passed with no order the service refused, and one it took, the throttle
// starts afresh.
//
// Before the throttle, the order-service instances' room (orderRoom): a
// new order none of them has room for, by what their answers said, is
// refused here at once, and the throttle does not count it: it is not
// an order the service refused.
func throttleNewWork(on bool, room *orderRoom, log *slog.Logger, counter *atomic.Int64) rest.Middleware {
	if !on {
		return passThrough
	}
	t := newThrottle()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := time.Now()
			full := !room.has(now)
			if full || !t.admit(now) {
				if full {
					room.refusedHere()
				}
				counter.Add(1)
				log.DebugContext(r.Context(), "new work throttled", "path", r.URL.Path, "no_room", full)
				rest.WriteProblem(w, r, http.StatusServiceUnavailable, "overloaded", "the shop is taking as many orders as it can finish in time; try again in a moment")
				return
			}
			room.sentOn()
			defer room.answered() // the proxy panics when an answer breaks off
			rec := telemetry.NewResponseRecorder(w)
			next.ServeHTTP(rec, r)
			t.record(rec.Status() != http.StatusServiceUnavailable, time.Now())
		})
	}
}

// throttleWindow is how far back the throttle looks; throttleCalm is how
// long the service must refuse nothing for the throttle to start afresh.
const (
	throttleWindow = 2 * time.Second
	throttleCalm   = time.Second
)

// throttle is throttleNewWork's state: failsafe-go's adaptive throttler,
// renewed once the service has refused nothing for throttleCalm.
type throttle struct {
	mu             sync.Mutex
	t              adaptivethrottler.AdaptiveThrottler[any]
	refused, taken time.Time // the service's last refusal, and last order taken
}

func newThrottle() *throttle { return &throttle{t: newThrottler()} }

func newThrottler() adaptivethrottler.AdaptiveThrottler[any] {
	return adaptivethrottler.NewBuilder[any]().
		WithFailureRateThreshold(0.1, 20, throttleWindow).
		WithMaxRejectionRate(0.95).
		Build()
}

// admit tells whether a new order goes on; one refused here is counted
// as asked for and not taken.
func (t *throttle) admit(now time.Time) bool {
	t.mu.Lock()
	if t.taken.After(t.refused) && now.Sub(t.refused) >= throttleCalm && t.t.RejectionRate() > 0 {
		t.t = newThrottler()
	}
	th := t.t
	t.mu.Unlock()
	if th.TryAcquirePermit() {
		return true
	}
	th.RecordFailure()
	return false
}

// record counts what the service made of an order sent on.
func (t *throttle) record(taken bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if taken {
		t.taken = now
		t.t.RecordSuccess()
	} else {
		t.refused = now
		t.t.RecordFailure()
	}
}
