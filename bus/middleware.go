package bus

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Middleware wraps a handler.
type Middleware func(Handler) Handler

// OnlyTypes hands h the messages of the given types and acknowledges every
// other one untouched: an event a consumer group does not act on costs it
// no inbox row, no transaction and no retry. Put it outermost.
func OnlyTypes(types ...string) Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			if !slices.Contains(types, m.Type) {
				return nil
			}
			return h(ctx, m)
		}
	}
}

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
//
// A message with a deadline (see Deadline) that fails transiently is not
// dead-lettered however often it was delivered: its sender waits for it
// until then and retries it after (a saga's next attempt), so it is
// redelivered until the deadline, when SkipExpired drops it.
func DeadLetter(pub Publisher, group string, maxDeliveries int, onDead func(m *Message, reason error)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			if err == nil {
				return nil
			}
			if !IsPermanent(err) {
				if _, owned := Deadline(m); owned || m.Attempt < maxDeliveries {
					return err
				}
			}
			dead := *m
			dead.Headers = make(map[string]string, len(m.Headers)+6)
			maps.Copy(dead.Headers, m.Headers)
			dead.Headers[HeaderDLQID] = m.ID
			dead.Headers[HeaderDLQReason] = truncate(err.Error(), 1024)
			dead.Headers[HeaderDLQTopic] = m.Topic
			dead.Headers[HeaderDLQGroup] = group
			dead.Headers[HeaderDLQAttempts] = strconv.Itoa(m.Attempt)
			dead.Headers[HeaderDLQTime] = time.Now().UTC().Format(time.RFC3339Nano)
			// A new id: the same message may die in several groups, and again
			// after a redrive, and each death is a dead letter of its own.
			dead.ID = DedupeID(m) + ":" + group
			if dead.Source == "" {
				// From a publisher that named none: the group speaks for it.
				dead.Source = group
			}
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

// SkipExpired drops, as handled, a message whose deadline (see Request;
// a saga's command carries the time its step gives up on this attempt) has
// passed when its handling would start: nobody waits for its answer any
// more. A handling that started in time is not cut off at the deadline: a
// call it made to another system (a card processor) would then have an
// effect whose answer is lost, and the next message of its key (the
// saga's compensation) could act before that effect lands. Its own
// timeouts bound it.
func SkipExpired() Middleware { return skipExpired(nil) }

// skipExpired is SkipExpired, telling onSkip (when set) of each drop.
func skipExpired(onSkip func(m *Message, late time.Duration)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			d, ok := Deadline(m)
			if !ok {
				return next(ctx, m)
			}
			if now := time.Now(); !now.Before(d) {
				if onSkip != nil {
					onSkip(m, now.Sub(d))
				}
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

// ReliableConfig is the policy of Reliable: where dead letters go and
// when a message becomes one.
type ReliableConfig struct {
	// DeadLetters receives the messages given up on, on DeadLetterTopic.
	DeadLetters Publisher
	// Group is the consumer group, recorded in each dead letter.
	Group string
	// MaxDeliveries is the delivery on which a message that still fails
	// transiently is dead-lettered; 5 when zero. The broker's redelivery
	// (with the adapter's backoff) is the one retry of a consumer:
	// Reliable does not retry in place unless Retry says so.
	MaxDeliveries int
	// Retry, when Attempts > 1, retries a transient failure in place
	// before the message goes back to the broker: for a consumer whose
	// handler must not be overtaken by the next message of its key.
	Retry RetryConfig
	// Log, when set, receives one error line per dead letter and one info
	// line per message dropped past its deadline.
	Log *slog.Logger
}

// RetryConfig is an in-place retry: Attempts calls in all, waiting Base,
// 2×Base, … (at most Max, with full jitter) in between.
type RetryConfig struct {
	Attempts  int
	Base, Max time.Duration
}

// Reliable is the stack every consumer of a service uses around its
// handler h, outermost first:
//
//	SkipExpired  a message past its deadline is dropped as handled, not started
//	DeadLetter   a permanent failure at once; a transient one on the MaxDeliveries-th
//	             delivery, unless it has a deadline (its sender retries it)
//	Retry        in place, only when cfg.Retry.Attempts > 1
//	Recover      a panic is a permanent failure, so it reaches DeadLetter
//
// So every message ends handled, redelivered (a transient failure before
// its last delivery or its deadline), dropped because nobody waits for it
// any more, or as a dead letter with its reason; none vanishes.
func Reliable(h Handler, cfg ReliableConfig) Handler {
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 5
	}
	var onDead func(m *Message, reason error)
	var onSkip func(m *Message, late time.Duration)
	if cfg.Log != nil {
		onDead = func(m *Message, reason error) {
			cfg.Log.Error("message dead-lettered", "topic", m.Topic, "id", m.ID, "type", m.Type, "group", cfg.Group, "attempt", m.Attempt, "reason", reason)
		}
		onSkip = func(m *Message, late time.Duration) {
			cfg.Log.Info("message past its deadline dropped; its sender has moved on", "topic", m.Topic, "id", m.ID, "type", m.Type, "group", cfg.Group, "late", late.Round(time.Millisecond).String())
		}
	}
	mw := []Middleware{skipExpired(onSkip), DeadLetter(cfg.DeadLetters, cfg.Group, cfg.MaxDeliveries, onDead)}
	if cfg.Retry.Attempts > 1 {
		mw = append(mw, Retry(cfg.Retry.Attempts, cfg.Retry.Base, cfg.Retry.Max))
	}
	return Chain(h, append(mw, Recover())...)
}
