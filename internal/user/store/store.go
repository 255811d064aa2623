// Package store keeps user-service's users and signing keys in SQL.
package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/user"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements user.Store. It is safe for concurrent use.
type Store struct{ db *sqldb.DB }

var _ user.Store = (*Store)(nil)

// New migrates db to the current schema and returns a store over it.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

const userCols = `id, username, display_name, role, password_hash, created_at`

func scanUser(row interface{ Scan(...any) error }) (user.User, error) {
	var u user.User
	var created int64
	err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.Role, &u.PasswordHash, &created)
	u.CreatedAt = time.UnixMilli(created).UTC()
	return u, err
}

func (s *Store) UserByName(ctx context.Context, username string) (user.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT `+userCols+` FROM users WHERE username = ?`), username))
	if errors.Is(err, sql.ErrNoRows) {
		return user.User{}, fault.New(fault.NotFound, "no user %q", username)
	}
	if err != nil {
		return user.User{}, fmt.Errorf("user by name: %w", err)
	}
	return u, nil
}

func (s *Store) UserByID(ctx context.Context, id int64) (user.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT `+userCols+` FROM users WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return user.User{}, fault.New(fault.NotFound, "no user %d", id)
	}
	if err != nil {
		return user.User{}, fmt.Errorf("user by id: %w", err)
	}
	return u, nil
}

func (s *Store) CreateUser(ctx context.Context, u user.User) (user.User, error) {
	err := s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(
		`INSERT INTO users (username, display_name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`),
		u.Username, u.DisplayName, u.Role, u.PasswordHash, u.CreatedAt.UnixMilli()).Scan(&u.ID)
	if s.db.Dialect.IsUniqueViolation(err) {
		return user.User{}, fault.New(fault.Conflict, "username %q is taken", u.Username)
	}
	if err != nil {
		return user.User{}, fmt.Errorf("insert user: %w", err)
	}
	return u, nil
}

func (s *Store) SigningKeys(ctx context.Context) ([]auth.Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key FROM signing_keys ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	var keys []auth.Key
	for rows.Next() {
		var k auth.Key
		var seed []byte
		if err := rows.Scan(&k.ID, &seed); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %q is corrupt", k.ID)
		}
		k.Private = ed25519.NewKeyFromSeed(seed)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (s *Store) AddSigningKey(ctx context.Context, k auth.Key) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		var next int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM signing_keys`).Scan(&next); err != nil {
			return fmt.Errorf("add signing key: %w", err)
		}
		_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO signing_keys (kid, private_key, created_at, seq) VALUES (?, ?, ?, ?)`),
			k.ID, k.Private.Seed(), time.Now().UnixMilli(), next)
		if err != nil {
			return fmt.Errorf("add signing key: %w", err)
		}
		return nil
	})
}
