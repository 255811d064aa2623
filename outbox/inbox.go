package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

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
	insert := db.Dialect.Rebind(`INSERT INTO inbox (consumer, message_id, handled_at) VALUES (?, ?, ?) ON CONFLICT (consumer, message_id) DO NOTHING`)
	return func(ctx context.Context, m *bus.Message) error {
		return inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, insert, consumer, m.ID, time.Now().UnixMilli())
			if err != nil {
				return fmt.Errorf("inbox: record %s: %w", m.ID, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return nil // applied before
			}
			return fn(ctx, tx, m)
		})
	}
}
