// Package msg connects deadletter-service to the broker:
//
//	topic        group                handles
//	deadletter   deadletter-service   every dead letter
package msg

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/deadletter"
	"github.com/junction-go/junction/internal/deadletter/store"
	"github.com/junction-go/junction/outbox"
)

// Subscribe records every dead letter once. A dead letter that cannot be
// recorded, even one whose handling panics, stays in the broker and is
// redelivered (with the adapter's backoff): there is nowhere further to
// move it. One that is malformed is logged and dropped (it cannot die
// twice).
func Subscribe(ctx context.Context, sub bus.Subscriber, st *store.Store, log *slog.Logger) (bus.Subscription, error) {
	record := outbox.Idempotent(st.DB(), events.GroupDeadLetters, func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		l, err := deadletter.FromMessage(m)
		if err != nil {
			log.ErrorContext(ctx, "malformed dead letter dropped", "id", m.ID, "err", err)
			return nil
		}
		log.WarnContext(ctx, "dead letter", "topic", l.Topic, "group", l.Group, "message", l.MessageID, "type", l.Type, "reason", l.Reason, "attempts", l.Attempts)
		return st.AddTx(ctx, tx, l)
	})
	return sub.Subscribe(ctx, bus.DeadLetterTopic, events.GroupDeadLetters, bus.Chain(record, redeliverPanics(log)))
}

// redeliverPanics turns a panic into a transient failure, logged once per
// delivery.
func redeliverPanics(log *slog.Logger) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		recovered := bus.Recover()(next)
		return func(ctx context.Context, m *bus.Message) error {
			err := recovered(ctx, m)
			if bus.IsPermanent(err) {
				log.ErrorContext(ctx, "recording a dead letter failed; it will be delivered again", "id", m.ID, "attempt", m.Attempt, "err", err)
				return fmt.Errorf("%v", err) // transient: redelivered
			}
			return err
		}
	}
}
