// Package store keeps notification-service's log in SQL, with the inbox of
// the events it has applied (package outbox).
package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/junction-go/junction/internal/notification"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements notification.Store. It is safe for concurrent use.
type Store struct{ db *sqldb.DB }

var _ notification.Store = (*Store)(nil)

// New migrates db (with the inbox's tables) and returns a store over it.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	if _, err := outbox.New(ctx, db); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB returns the database, for the idempotent consumer.
func (s *Store) DB() *sqldb.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// AddTx records n inside tx.
func (s *Store) AddTx(ctx context.Context, tx *sql.Tx, n notification.Notification) error {
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO notifications (user_id, order_id, event, event_id, text, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
		n.UserID, n.OrderID, n.Event, n.EventID, n.Text, n.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("add notification: %w", err)
	}
	return nil
}

func (s *Store) List(ctx context.Context, userID int64, limit int) ([]notification.Notification, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT id, user_id, order_id, event, event_id, text, created_at FROM notifications WHERE user_id = ? ORDER BY id DESC LIMIT ?`), userID, limit)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	out := []notification.Notification{}
	for rows.Next() {
		var n notification.Notification
		var created int64
		if err := rows.Scan(&n.ID, &n.UserID, &n.OrderID, &n.Event, &n.EventID, &n.Text, &created); err != nil {
			return nil, fmt.Errorf("list notifications: %w", err)
		}
		n.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, n)
	}
	return out, rows.Err()
}
