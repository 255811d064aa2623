package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/sqldb"
)

// TxHandler applies a message's effect inside tx.
type TxHandler func(ctx context.Context, tx *sql.Tx, m *bus.Message) error

// Idempotent returns a bus handler that applies each message at most once
// for consumer: it records the message id in the same transaction as fn's
// effect, and a message whose id is already recorded is acknowledged with
// no effect. If fn fails, nothing of it nor the id is kept, and the error
// goes back to the bus. The tables come from New, which must have run on
// db.
func Idempotent(db *sqldb.DB, consumer string, fn TxHandler) bus.Handler {
	return idempotent(db, db.InTx, consumer, fn)
}

// Idempotent is the package's Idempotent on o's database, for a consumer
// whose effect may write messages to o: it runs in o.InTx, so they go out
// at once.
func (o *Outbox) Idempotent(consumer string, fn TxHandler) bus.Handler {
	return idempotent(o.db, o.InTx, consumer, fn)
}

func idempotent(db *sqldb.DB, inTx func(context.Context, func(*sql.Tx) error) error, consumer string, fn TxHandler) bus.Handler {
	duplicates.LoadOrStore(consumer, new(atomic.Uint64)) // counted from zero
	insert := db.Dialect.Rebind(`INSERT INTO inbox (consumer, message_id, handled_at) VALUES (?, ?, ?) ON CONFLICT (consumer, message_id) DO NOTHING`)
	return func(ctx context.Context, m *bus.Message) error {
		return inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, insert, consumer, m.ID, time.Now().UnixMilli())
			if err != nil {
				return fmt.Errorf("inbox: record %s: %w", m.ID, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				countDuplicate(consumer)
				trace.SpanFromContext(ctx).AddEvent("duplicate skipped: applied before")
				return nil // applied before
			}
			return fn(ctx, tx, m)
		})
	}
}

// duplicates counts, per consumer, the messages this process's inboxes
// skipped because they had been applied before.
var duplicates sync.Map // consumer -> *atomic.Uint64

func countDuplicate(consumer string) {
	c, ok := duplicates.Load(consumer)
	if !ok {
		c, _ = duplicates.LoadOrStore(consumer, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
}

// DuplicatesSkipped returns, per consumer, how many messages the inboxes of
// this process skipped as applied before (a redelivery after a crash, a
// relay publishing again): for metrics.
func DuplicatesSkipped() map[string]uint64 {
	out := map[string]uint64{}
	duplicates.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}
