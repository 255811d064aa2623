// Package store keeps deadletter-service's dead letters in SQL, with the
// inbox of the messages it has recorded (package outbox).
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/deadletter"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements deadletter.Store. It is safe for concurrent use.
type Store struct{ db *sqldb.DB }

var _ deadletter.Store = (*Store)(nil)

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

// AddTx records l inside tx.
func (s *Store) AddTx(ctx context.Context, tx *sql.Tx, l deadletter.Letter) error {
	h, err := json.Marshal(l.Headers)
	if err != nil {
		return err
	}
	body := l.Body
	if body == nil {
		body = []byte{}
	}
	_, err = tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO dead_letters (message_id, topic, grp, type, reason, attempts, died_at, headers, body, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		l.MessageID, l.Topic, l.Group, l.Type, l.Reason, l.Attempts, l.DiedAt.UnixMilli(), string(h), body, l.Status)
	if err != nil {
		return fmt.Errorf("add dead letter: %w", err)
	}
	return nil
}

const cols = `id, message_id, topic, grp, type, reason, attempts, died_at, headers, body, status, redrives`

func scan(row interface{ Scan(...any) error }) (deadletter.Letter, error) {
	var l deadletter.Letter
	var died int64
	var headers string
	err := row.Scan(&l.ID, &l.MessageID, &l.Topic, &l.Group, &l.Type, &l.Reason, &l.Attempts, &died, &headers, &l.Body, &l.Status, &l.Redrives)
	if err != nil {
		return l, err
	}
	l.DiedAt = time.UnixMilli(died).UTC()
	err = json.Unmarshal([]byte(headers), &l.Headers)
	return l, err
}

func (s *Store) List(ctx context.Context, limit int) ([]deadletter.Letter, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT `+cols+` FROM dead_letters ORDER BY id DESC LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	out := []deadletter.Letter{}
	for rows.Next() {
		l, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (s *Store) Get(ctx context.Context, id int64) (deadletter.Letter, error) {
	l, err := scan(s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT `+cols+` FROM dead_letters WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return deadletter.Letter{}, fault.New(fault.NotFound, "no dead letter %d", id)
	}
	if err != nil {
		return deadletter.Letter{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return l, nil
}

func (s *Store) MarkRedriven(ctx context.Context, id int64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`UPDATE dead_letters SET status = ?, redrives = redrives + 1 WHERE id = ? RETURNING redrives`), deadletter.StatusRedriven, id).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fault.New(fault.NotFound, "no dead letter %d", id)
	}
	return n, err
}
