// Package sqlite is sqldb's SQLite driver (modernc.org/sqlite, pure Go, so
// no cgo). Importing it registers it with sqldb.Open, for
//
//	sqlite:///abs/path/file.db, sqlite://rel/path.db, or a plain file path
//
// The file is created with its folder when missing and opened in WAL mode
// with synchronous=NORMAL: a committed transaction survives a crash of the
// process; an operating-system crash or power loss may lose the last few.
// Every transaction takes the write lock when it begins, and the process's
// writers queue for it in Go and commit together (sqldb's group commit),
// so concurrent writers wait instead of failing on lock upgrades. Each
// connection keeps its statements compiled (stmtcache.go).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pressly/goose/v3"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/internal/goosemigrate"
)

func init() { sqldb.Register("sqlite", opener{}) }

type opener struct{}

// Accepts takes sqlite:// URLs and plain paths (anything without a scheme).
func (opener) Accepts(url string) bool {
	return strings.HasPrefix(url, "sqlite://") || !strings.Contains(url, "://")
}

func (opener) Open(ctx context.Context, url string) (*sqldb.DB, error) {
	path := strings.TrimPrefix(url, "sqlite://")
	if path == "" {
		return nil, errors.New("sqldb: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqldb: create folder: %w", err)
	}
	// busy_timeout first: the pragmas run in order as each connection
	// opens, and switching a new file to WAL while another process opens
	// it too must wait for its lock, not fail at once.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	db := sql.OpenDB(cachingConnector{dsn: dsn, drv: &msqlite.Driver{}})
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	// The first connection turns a new file to WAL, which SQLite does
	// not wait for when another process opens it at the same moment: the
	// processes take turns.
	err := withFileLock(path, func() error { return db.PingContext(ctx) })
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", path, err)
	}
	return sqldb.New(db, Dialect{path: path}, true), nil
}

// Dialect is SQLite's: ? placeholders as they are, migrations from the
// "sqlite" folder.
type Dialect struct {
	path string // the file, for the migrations' lock
}

func (Dialect) Name() string           { return "sqlite" }
func (Dialect) Rebind(q string) string { return q }

func (Dialect) IsUniqueViolation(err error) bool {
	var e *msqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// Migrate holds the lock file beside the database while it migrates, so
// processes that open one database at once (replicas starting together)
// apply each migration once instead of racing to.
func (d Dialect) Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, versionTable string) error {
	return withFileLock(d.path, func() error { return goosemigrate.Up(ctx, db, goose.DialectSQLite3, fsys, versionTable) })
}

// withFileLock runs fn holding an exclusive lock on the file "<path>-lock",
// shared with every process that opens the database at path.
func withFileLock(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.OpenFile(path+"-lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("sqldb: lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("sqldb: lock: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}
