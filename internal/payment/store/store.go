// Package store keeps payment-service's payments in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/payment"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store keeps payments. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

// New migrates db (with the outbox's tables) and returns a store over it.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, outbox: ob}, nil
}

// Outbox returns the outbox replies go to.
func (s *Store) Outbox() *outbox.Outbox { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Get returns the payment of orderID (from tx when not nil), or
// fault.NotFound.
func (s *Store) Get(ctx context.Context, tx *sql.Tx, orderID int64) (payment.Payment, error) {
	var q querier = s.db
	if tx != nil {
		q = tx
	}
	p := payment.Payment{OrderID: orderID}
	var state string
	err := q.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT payment_id, state, amount, currency, reason FROM payments WHERE order_id = ?`), orderID).
		Scan(&p.PaymentID, &state, &p.Amount, &p.Currency, &p.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fault.New(fault.NotFound, "no payment for order %d", orderID)
	}
	if err != nil {
		return p, fmt.Errorf("payment %d: %w", orderID, err)
	}
	p.State = payment.State(state)
	return p, nil
}

// Put writes p in tx, replacing the order's payment.
func (s *Store) Put(ctx context.Context, tx *sql.Tx, p payment.Payment) error {
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO payments (order_id, payment_id, state, amount, currency, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id) DO UPDATE SET payment_id = excluded.payment_id, state = excluded.state, amount = excluded.amount, currency = excluded.currency, reason = excluded.reason, updated_at = excluded.updated_at`),
		p.OrderID, p.PaymentID, string(p.State), p.Amount, p.Currency, p.Reason, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("put payment %d: %w", p.OrderID, err)
	}
	return nil
}
