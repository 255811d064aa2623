package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestDialects runs the same portable statements on every database: the
// placeholders are rebound, RETURNING works, and a duplicate key is
// recognised as a unique violation.
func TestDialects(t *testing.T) {
	for _, b := range sqldbtest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			var v int
			err := db.QueryRowContext(ctx, db.Dialect.Rebind(`INSERT INTO kv (k, v) VALUES (?, ?) RETURNING v`), "a", 7).Scan(&v)
			if err != nil || v != 7 {
				t.Fatalf("insert returning = %d, %v", v, err)
			}
			_, err = db.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO kv (k, v) VALUES (?, ?)`), "a", 8)
			if !db.Dialect.IsUniqueViolation(err) {
				t.Errorf("duplicate key error %v not recognised as a unique violation", err)
			}
			rollback := errors.New("changed my mind")
			err = db.InTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO kv (k, v) VALUES (?, ?)`), "b", 1); err != nil {
					return err
				}
				return rollback
			})
			var n int
			_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k = 'b'`).Scan(&n)
			if !errors.Is(err, rollback) || n != 0 {
				t.Errorf("InTx after fn failed = %v with %d rows kept; want the error and nothing kept", err, n)
			}
		})
	}
}

func TestOpenRejectsUnknownURLs(t *testing.T) {
	for _, u := range []string{"mysql://x", "", "redis://127.0.0.1"} {
		if db, err := sqldb.Open(context.Background(), u); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}

func TestMarks(t *testing.T) {
	for n, want := range map[int]string{1: "?", 3: "?,?,?"} {
		if got := sqldb.Marks(n); got != want {
			t.Errorf("Marks(%d) = %q, want %q", n, got, want)
		}
	}
}
