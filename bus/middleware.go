package bus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"
)

// Middleware wraps a handler.
type Middleware func(Handler) Handler

// Chain applies mw to h so that the first middleware is the outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Recover turns a panic in the handler into a Permanent error: a handler
// that panics on a message will panic on it again.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = Permanent(fmt.Errorf("handler panicked: %v", v))
				}
			}()
			return next(ctx, m)
		}
	}
}

// Retry calls the handler again, in place, after a transient error: up to
// attempts calls in all, waiting base, 2×base, … (at most max, with full
// jitter) in between. Permanent errors are not retried. Retrying in place
// keeps the order of messages with the same key; what is still failing
// after the last attempt goes back to the broker for redelivery.
func Retry(attempts int, base, max time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			wait := base
			for i := 1; ; i++ {
				err := next(ctx, m)
				if err == nil || IsPermanent(err) || i >= attempts {
					return err
				}
				select {
				case <-ctx.Done():
					return err
				case <-time.After(rand.N(wait) + 1):
				}
				wait = min(wait*2, max)
			}
		}
	}
}

// DeadLetterTopic is where DeadLetter moves messages that cannot be handled.
const DeadLetterTopic = "deadletter"

// DeadLetter moves a message to DeadLetterTopic when its handler fails
// permanently, or still fails on its maxDeliveries-th delivery, with the
// reason, the origin topic, the group and the delivery count in its
// headers; then the message counts as handled. If the move itself fails,
// the handler's error is returned and the message is delivered again.
// onDead (optional) is told of each move.
func DeadLetter(pub Publisher, group string, maxDeliveries int, onDead func(m *Message, reason error)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil || (!IsPermanent(err) && m.Attempt < maxDeliveries) {
				return err
			}
			dead := *m
			dead.Headers = make(map[string]string, len(m.Headers)+5)
			for k, v := range m.Headers {
				dead.Headers[k] = v
			}
			dead.Headers[HeaderDLQID] = m.ID
			dead.Headers[HeaderDLQReason] = truncate(err.Error(), 1024)
			dead.Headers[HeaderDLQTopic] = m.Topic
			dead.Headers[HeaderDLQGroup] = group
			dead.Headers[HeaderDLQAttempts] = strconv.Itoa(m.Attempt)
			dead.Headers[HeaderDLQTime] = time.Now().UTC().Format(time.RFC3339Nano)
			// A new id: the same message may die in several groups, and again
			// after a redrive, and each death is a dead letter of its own.
			dead.ID = DedupeID(m) + ":" + group
			if perr := pub.Publish(ctx, DeadLetterTopic, &dead); perr != nil {
				return fmt.Errorf("%w (and moving it to %s failed: %v)", err, DeadLetterTopic, perr)
			}
			if onDead != nil {
				onDead(m, err)
			}
			return nil
		}
	}
}

// SkipExpired drops, as handled, a message whose deadline (see Request) has
// passed: nobody waits for its answer any more.
func SkipExpired() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			if d, ok := Deadline(m); ok && time.Now().After(d) {
				return nil
			}
			return next(ctx, m)
		}
	}
}

// Observe calls fn after each handling with its outcome and duration: the
// hook for metrics and tracing.
func Observe(fn func(ctx context.Context, m *Message, err error, d time.Duration)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			start := time.Now()
			err := next(ctx, m)
			fn(ctx, m, err, time.Since(start))
			return err
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Reliable is the stack every consumer of a service uses around its
// handler h, innermost first: Recover (a panic is permanent), DeadLetter
// (after maxDeliveries, or at once when permanent; each dead letter is
// logged to log as an error when log is not nil), and Retry in place (3
// tries, 50 ms doubling to 1 s) before the message goes back to the
// broker.
func Reliable(h Handler, pub Publisher, group string, maxDeliveries int, log *slog.Logger) Handler {
	var onDead func(m *Message, reason error)
	if log != nil {
		onDead = func(m *Message, reason error) {
			log.Error("message dead-lettered", "topic", m.Topic, "id", m.ID, "type", m.Type, "group", group, "reason", reason)
		}
	}
	return Chain(h, Recover(), DeadLetter(pub, group, maxDeliveries, onDead), Retry(3, 50*time.Millisecond, time.Second))
}
