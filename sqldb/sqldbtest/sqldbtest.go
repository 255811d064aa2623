// Package sqldbtest gives tests a fresh database of each kind Junction runs
// on: a SQLite file in a temporary folder, and a schema of its own on the
// machine's PostgreSQL (JUNCTION_TEST_POSTGRES_URL, or
// postgres://postgres@127.0.0.1:5432/test). A PostgreSQL that does not
// answer skips the test, or fails it when JUNCTION_REQUIRE_ALL=1.
package sqldbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/postgres" // the drivers every test may open
	_ "github.com/junction-go/junction/sqldb/sqlite"
)

// Backend opens a fresh, empty database for one test.
type Backend struct {
	Name string
	Open func(t testing.TB) *sqldb.DB
}

// Backends are every database Junction supports.
var Backends = []Backend{{"sqlite", SQLite}, {"postgres", Postgres}}

// SQLite returns a database in a new file, closed at the end of the test.
func SQLite(t testing.TB) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLiteWith is SQLite with schema (statements) applied.
func SQLiteWith(t testing.TB, schema string) *sqldb.DB {
	t.Helper()
	db := SQLite(t)
	if _, err := db.ExecContext(context.Background(), schema); err != nil {
		t.Fatal(err)
	}
	return db
}

// PostgresServer returns a handle on the machine's PostgreSQL as its
// administrator, closed at the end of the test, and the URL it opened,
// skipping the test when the server does not answer.
func PostgresServer(t testing.TB) (admin *sqldb.DB, url string) {
	t.Helper()
	url = os.Getenv("JUNCTION_TEST_POSTGRES_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sqldb.Open(ctx, url)
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatalf("PostgreSQL is required (JUNCTION_REQUIRE_ALL=1) but did not answer: %v", err)
		}
		t.Skipf("no PostgreSQL (%v); set JUNCTION_TEST_POSTGRES_URL or start one", err)
	}
	t.Cleanup(func() { admin.Close() })
	return admin, url
}

// Postgres returns a database whose search path is a new schema, dropped
// at the end of the test.
func Postgres(t testing.TB) *sqldb.DB {
	t.Helper()
	url := PostgresSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresSchema makes a new schema on the machine's PostgreSQL, dropped
// at the end of the test, and returns the URL whose search path it is:
// for a test that opens it more than once (replicas of a service).
func PostgresSchema(t testing.TB) string {
	t.Helper()
	admin, base := PostgresServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := fmt.Sprintf("t_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// SmallTxSchema is the table SmallTx works on.
const SmallTxSchema = `CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT NOT NULL)`

// SmallTx is the transaction an outbox or a saga step makes: a lookup and
// two writes.
func SmallTx(ctx context.Context, tx *sql.Tx, i int64) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE n > ?`, i-10).Scan(&n); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO t (n, s) VALUES (?, ?)`, i, "payload"); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE t SET s = ? WHERE n = ?`, "done", i)
	return err
}

// Each runs fn as a subtest on a fresh database of every backend: a
// store's contract holds on each database Junction runs on.
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open(t)) })
	}
}
