// Package sqldb opens a service's own database and migrates its schema.
//
// Queries are written once, in portable SQL with ? placeholders; what differs
// between databases (placeholders, constraint errors, driver settings) is
// kept here, in the Dialect, so a service's store never branches on the
// database it runs on.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is what differs between the databases Junction runs on.
type Dialect interface {
	// Name is the dialect's name, which is also the folder of its migrations.
	Name() string
	// Rebind rewrites a query written with ? placeholders for this database.
	Rebind(query string) string
	// IsUniqueViolation reports whether err is a unique-constraint violation.
	IsUniqueViolation(err error) bool
}

// DB is a database handle with its dialect. It is safe for concurrent use.
type DB struct {
	*sql.DB
	Dialect Dialect

	// group, for SQLite, lets one writer of this process at a time and
	// commits the transactions that waited meanwhile together. SQLite has
	// one write lock per file, and writers that queue in Go wake the moment
	// it is free, where writers that meet it locked back off in sleeps of
	// up to 100 ms (busy_timeout) and throughput collapses under
	// contention. Nil for PostgreSQL.
	group *groupCommit
}

// Open opens the database named by url and checks that it answers:
//
//	sqlite:///abs/path/file.db, sqlite://rel/path.db, or a plain file path
//
// The SQLite file is created with its folder when missing and is opened in
// WAL mode with synchronous=NORMAL: a committed transaction survives a crash
// of the process; an operating-system crash or power loss may lose the last
// few. Every transaction takes the write lock when it begins, so concurrent
// writers wait (up to 5 s) instead of failing on lock upgrades.
//
// or PostgreSQL with postgres://user:pass@host:port/db?sslmode=…
// (search_path may be given as a parameter).
func Open(ctx context.Context, url string) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(ctx, url)
	case strings.Contains(url, "://") && !strings.HasPrefix(url, "sqlite://"):
		return nil, fmt.Errorf("sqldb: unsupported database url %q", redact(url))
	}
	path := strings.TrimPrefix(url, "sqlite://")
	if path == "" {
		return nil, errors.New("sqldb: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqldb: create folder: %w", err)
	}
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	db := sql.OpenDB(cachingConnector{dsn: dsn, drv: &sqlite.Driver{}})
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", path, err)
	}
	d := &DB{DB: db, Dialect: sqliteDialect{}}
	d.group = newGroupCommit(d.DB)
	return d, nil
}

// Migrate applies the migrations in fsys/<dialect name>/*.sql that have not
// been applied yet, in order, recording them in goose's default table.
func (db *DB) Migrate(ctx context.Context, fsys fs.FS) error {
	return db.MigrateAs(ctx, fsys, "goose_db_version")
}

// MigrateAs is Migrate with its own version table, for a library that
// keeps tables in a service's database beside the service's own (the
// outbox).
func (db *DB) MigrateAs(ctx context.Context, fsys fs.FS, versionTable string) error {
	sub, err := fs.Sub(fsys, db.Dialect.Name())
	if err != nil {
		return fmt.Errorf("sqldb: migrations for %s: %w", db.Dialect.Name(), err)
	}
	dialect := goose.DialectSQLite3
	if db.Dialect.Name() == "postgres" {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, db.DB, sub, goose.WithDisableGlobalRegistry(true), goose.WithTableName(versionTable))
	if err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqldb: migrate: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction and commits it when fn returns nil; it rolls
// back on an error or a panic (which InTx then re-raises).
//
// On SQLite the process's writers share the file's one write lock by group
// commit (see groupcommit.go): transactions that wait for the lock are run
// together, each in its own savepoint, and committed once. fn must not write
// through db itself, only through the transaction; inside it, statements run
// to completion even if ctx is cancelled (they are short, and interrupting
// one would roll back the whole group), and fn sees ctx as usual.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.group != nil {
		return db.group.do(ctx, fn)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := runFn(tx, fn); err != nil {
		_ = tx.Rollback()
		return outcome(err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// runFn runs fn, turning a panic into an error that carries it.
func runFn(tx *sql.Tx, fn func(*sql.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicked{value: p}
		}
	}()
	return fn(tx)
}

// panicked is a panic of a transaction's fn, re-raised in its caller's
// goroutine once the transaction is rolled back.
type panicked struct{ value any }

func (p *panicked) Error() string { return fmt.Sprint("sqldb: transaction panicked: ", p.value) }

// ExecContext runs one statement on its own; on SQLite as a transaction
// among the process's writers (see InTx), so not a statement that cannot
// run inside one (VACUUM, some PRAGMAs: use db.DB for those).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if db.group == nil {
		return db.DB.ExecContext(ctx, query, args...)
	}
	var res sql.Result
	err := db.InTx(ctx, func(tx *sql.Tx) (err error) {
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

type sqliteDialect struct{}

func (sqliteDialect) Name() string           { return "sqlite" }
func (sqliteDialect) Rebind(q string) string { return q }
func (sqliteDialect) IsUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// redact hides a password in a database url, for errors.
func redact(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 {
		return url
	}
	userinfo := url[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return url[:scheme+3] + userinfo[:i] + ":xxxxx" + url[at:]
	}
	return url
}

// MigrationsFS returns the folder dir of an embedded file system, for
// Migrate. It panics only on a malformed dir, a programming error caught by
// any test.
func MigrationsFS(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
