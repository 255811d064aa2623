package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

func openSQLite(t testing.TB) *sqldb.DB { return sqldbtest.SQLiteWith(t, sqldbtest.SmallTxSchema) }

// TestKeptStatementsGiveTheSameAnswers: a statement kept compiled answers
// like a fresh one — with other arguments, while its own rows are still
// open (the same query nested in a transaction), after an error, and after
// the schema changed under it.
func TestKeptStatementsGiveTheSameAnswers(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	const q = `SELECT n, s FROM t WHERE n > ? ORDER BY n`
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		for i := 1; i <= 5; i++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO t (n, s) VALUES (?, ?)`, i, fmt.Sprint("s", i)); err != nil {
				return err
			}
		}
		outer, err := tx.QueryContext(ctx, q, 0)
		if err != nil {
			return err
		}
		defer outer.Close()
		var seen []string
		for outer.Next() {
			var n int
			var s string
			if err := outer.Scan(&n, &s); err != nil {
				return err
			}
			// The same query text again while outer's rows are open.
			var count int
			inner, err := tx.QueryContext(ctx, q, n)
			if err != nil {
				return err
			}
			for inner.Next() {
				count++
			}
			if err := inner.Close(); err != nil {
				return err
			}
			seen = append(seen, fmt.Sprintf("%s:%d", s, count))
		}
		if got, want := fmt.Sprint(seen), "[s1:4 s2:3 s3:2 s4:1 s5:0]"; got != want {
			t.Errorf("nested reads = %s, want %s", got, want)
		}
		return outer.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing statement, then the kept one still works.
	if _, err := db.ExecContext(ctx, `INSERT INTO t (n, s) VALUES (?, ?)`, 1, "dup"); err == nil {
		t.Fatal("inserting a duplicate key succeeded")
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t (n, s) VALUES (?, ?)`, 6, "s6"); err != nil {
		t.Fatalf("insert after a failed one: %v", err)
	}
	// The schema changes under the kept statement.
	if _, err := db.ExecContext(ctx, `ALTER TABLE t ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE n > ?`, 0).Scan(&n); err != nil || n != 6 {
		t.Errorf("count after the schema change = %d, %v; want 6", n, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT * FROM t WHERE n > ? ORDER BY n`, 5)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if len(cols) != 3 {
		t.Errorf("SELECT * after ADD COLUMN has columns %v, want the new one too", cols)
	}
}

// BenchmarkSmallTransactions: the transaction an outbox or a saga step
// makes (a lookup and two writes), through sqldb (statements kept) beside
// database/sql over modernc's driver as it comes, same file system, same
// run.
func BenchmarkSmallTransactions(b *testing.B) {
	ctx := context.Background()
	work := func(tx *sql.Tx, i int) error { return sqldbtest.SmallTx(ctx, tx, int64(i)) }
	b.Run("modernc", func(b *testing.B) {
		raw, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "raw.db")+"?_txlock=immediate&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Exec(`CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT NOT NULL)`); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			tx, err := raw.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := work(tx, i); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	})
	b.Run("sqldb", func(b *testing.B) {
		db := openSQLite(b)
		b.ResetTimer()
		for i := range b.N {
			if err := db.InTx(ctx, func(tx *sql.Tx) error { return work(tx, i) }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	})
}
