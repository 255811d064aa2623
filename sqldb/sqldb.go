// Package sqldb opens a service's own database and migrates its schema.
//
// Queries are written once, in portable SQL with ? placeholders; what differs
// between databases (placeholders, constraint errors, driver settings,
// migrations) is kept in the Dialect, so a service's store never branches on
// the database it runs on.
//
// The databases themselves come from driver packages that register
// themselves when imported, as database/sql drivers do:
// github.com/junction-go/junction/sqldb/sqlite (modernc's pure-Go SQLite)
// and github.com/junction-go/junction/sqldb/postgres (pgx). A program
// imports the ones it opens; a library over sqldb (outbox, saga) links
// neither.
package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
)

// Dialect is what differs between the databases Junction runs on.
type Dialect interface {
	// Name is the dialect's name, which is also the folder of its migrations.
	Name() string
	// Rebind rewrites a query written with ? placeholders for this database.
	Rebind(query string) string
	// IsUniqueViolation reports whether err is a unique-constraint violation.
	IsUniqueViolation(err error) bool
	// Migrate applies the migrations in fsys (this dialect's folder) that
	// db has not had yet, recording them in versionTable.
	Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, versionTable string) error
}

// Marks returns n placeholders separated by commas ("?,?,?"), for an IN
// list of n values in a query written with ? placeholders.
func Marks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// Driver opens the databases of one dialect.
type Driver interface {
	// Accepts reports whether url names a database of this driver.
	Accepts(url string) bool
	// Open opens and pings the database at url.
	Open(ctx context.Context, url string) (*DB, error)
}

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a driver available to Open under name. Driver packages
// call it when imported; registering a name twice panics (a programming
// error, as with database/sql).
func Register(name string, d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("sqldb: driver " + name + " registered twice")
	}
	drivers[name] = d
}

// DB is a database handle with its dialect. It is safe for concurrent use.
type DB struct {
	*sql.DB
	Dialect Dialect

	// group, for SQLite, lets one writer of this process at a time and
	// commits the transactions that waited meanwhile together. SQLite has
	// one write lock per file, and writers that queue in Go wake the moment
	// it is free, where writers that meet it locked back off in sleeps
	// (busy_timeout) and throughput collapses under contention. Nil for
	// PostgreSQL.
	group *groupCommit
}

// New wraps an open database of dialect d. With oneWriter (a database with
// a single write lock, such as SQLite), the process's transactions queue
// in Go for it and those that waited commit together (see InTx).
func New(db *sql.DB, d Dialect, oneWriter bool) *DB {
	out := &DB{DB: db, Dialect: d}
	if oneWriter {
		out.group = newGroupCommit(db)
	}
	return out
}

// Open opens the database named by url with the registered driver that
// accepts it (see the driver packages for their URLs: a SQLite file path
// or sqlite://…, postgres://…) and checks that it answers.
func Open(ctx context.Context, url string) (*DB, error) {
	driversMu.RLock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	driversMu.RUnlock()
	slices.Sort(names)
	for _, n := range names {
		driversMu.RLock()
		d := drivers[n]
		driversMu.RUnlock()
		if d.Accepts(url) {
			return d.Open(ctx, url)
		}
	}
	return nil, fmt.Errorf("sqldb: no driver for %q (drivers: %v; import github.com/junction-go/junction/sqldb/sqlite or sqldb/postgres)", redact(url), names)
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
	return db.Dialect.Migrate(ctx, db.DB, sub, versionTable)
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
