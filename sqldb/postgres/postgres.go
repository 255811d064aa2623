// Package postgres is sqldb's PostgreSQL driver (pgx). Importing it
// registers it with sqldb.Open, for
//
//	postgres://user:pass@host:port/db?sslmode=…  (or postgresql://)
//
// search_path may be given as a parameter, so each service can have a
// schema of its own on one server.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/internal/goosemigrate"
)

func init() { sqldb.Register("postgres", opener{}) }

type opener struct{}

func (opener) Accepts(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

func (opener) Open(ctx context.Context, u string) (*sqldb.DB, error) {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("sqldb: %s: %w", redact(u), err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", redact(u), err)
	}
	return sqldb.New(db, Dialect{}, false), nil
}

// redact hides the password of u, for errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "a malformed postgres URL"
	}
	return p.Redacted()
}

// Dialect is PostgreSQL's: $n placeholders, migrations from the
// "postgres" folder.
type Dialect struct{}

func (Dialect) Name() string { return "postgres" }

// Rebind turns ? placeholders into $1, $2, … Queries hold no literal '?'.
func (Dialect) Rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (Dialect) IsUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// Migrate holds a session advisory lock of its schema and version table
// while it runs (goose's session locker), so replicas that start together
// on a new schema take turns: without it they race to create the same
// tables and all but one fail.
func (Dialect) Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, versionTable string) error {
	var schema string
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte(schema + "." + versionTable))
	// Polled every second for up to five minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	return goosemigrate.Up(ctx, db, goose.DialectPostgres, fsys, versionTable, goose.WithSessionLocker(locker))
}
