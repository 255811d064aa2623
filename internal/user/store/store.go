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

func (s *Store) SigningKeys(ctx context.Context) ([]user.SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, private_key, created_at, activates_at, retires_at FROM signing_keys ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	var keys []user.SigningKey
	for rows.Next() {
		var k user.SigningKey
		var seed []byte
		var created, activates, retires int64
		if err := rows.Scan(&k.ID, &seed, &created, &activates, &retires); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %q is corrupt", k.ID)
		}
		k.Private = ed25519.NewKeyFromSeed(seed)
		k.Created, k.Activates = time.UnixMilli(created).UTC(), time.UnixMilli(activates).UTC()
		if retires > 0 {
			k.Retires = time.UnixMilli(retires).UTC()
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (s *Store) AddSigningKey(ctx context.Context, k user.SigningKey) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return s.addKey(ctx, tx, k) })
}

func (s *Store) addKey(ctx context.Context, tx *sql.Tx, k user.SigningKey) error {
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM signing_keys`).Scan(&next); err != nil {
		return fmt.Errorf("add signing key: %w", err)
	}
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO signing_keys (kid, private_key, created_at, seq, activates_at, retires_at) VALUES (?, ?, ?, ?, ?, 0)`),
		k.ID, k.Private.Seed(), k.Created.UnixMilli(), next, k.Activates.UnixMilli())
	if err != nil {
		return fmt.Errorf("add signing key: %w", err)
	}
	return nil
}

func (s *Store) Rotate(ctx context.Context, k user.SigningKey, retire time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE signing_keys SET retires_at = ? WHERE retires_at = 0`), retire.UnixMilli()); err != nil {
			return fmt.Errorf("retire signing keys: %w", err)
		}
		return s.addKey(ctx, tx, k)
	})
}

func (s *Store) AddRefresh(ctx context.Context, r user.Refresh) error {
	_, err := s.db.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO refresh_tokens (hash, family, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
		r.Hash, r.Family, r.UserID, r.Created.UnixMilli(), r.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("add refresh token: %w", err)
	}
	return nil
}

func (s *Store) UseRefresh(ctx context.Context, hash []byte, next func(user.Refresh) (user.Refresh, error)) (user.Refresh, error) {
	var got user.Refresh
	reused := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var created, expires, used, revoked int64
		err := tx.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT family, user_id, created_at, expires_at, used_at, revoked_at FROM refresh_tokens WHERE hash = ?`), hash).
			Scan(&got.Family, &got.UserID, &created, &expires, &used, &revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fault.New(fault.NotFound, "no such refresh token")
		}
		if err != nil {
			return fmt.Errorf("refresh token: %w", err)
		}
		got.Hash, got.Created, got.Expires = hash, time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC()
		if used > 0 {
			got.Used = time.UnixMilli(used).UTC()
		}
		if revoked > 0 {
			got.Revoked = time.UnixMilli(revoked).UTC()
		}
		if !got.Used.IsZero() {
			reused = true
			return s.revoke(ctx, tx, got.Family, time.Now())
		}
		n, err := next(got)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE refresh_tokens SET used_at = ? WHERE hash = ?`), n.Created.UnixMilli(), hash); err != nil {
			return fmt.Errorf("use refresh token: %w", err)
		}
		_, err = tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO refresh_tokens (hash, family, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
			n.Hash, n.Family, n.UserID, n.Created.UnixMilli(), n.Expires.UnixMilli())
		if err != nil {
			return fmt.Errorf("add refresh token: %w", err)
		}
		return nil
	})
	if err == nil && reused {
		return got, user.ErrRefreshReused
	}
	return got, err
}

func (s *Store) RevokeFamily(ctx context.Context, hash []byte, at time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		var family string
		err := tx.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT family FROM refresh_tokens WHERE hash = ?`), hash).Scan(&family)
		if errors.Is(err, sql.ErrNoRows) {
			return fault.New(fault.NotFound, "no such refresh token")
		}
		if err != nil {
			return fmt.Errorf("refresh token: %w", err)
		}
		return s.revoke(ctx, tx, family, at)
	})
}

func (s *Store) revoke(ctx context.Context, tx *sql.Tx, family string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at = 0`), at.UnixMilli(), family); err != nil {
		return fmt.Errorf("revoke refresh tokens: %w", err)
	}
	return nil
}
