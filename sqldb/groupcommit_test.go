package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

func openSQLite(t testing.TB) *sqldb.DB { return sqldbtest.SQLiteWith(t, sqldbtest.SmallTxSchema) }

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdWriteLock runs a transaction that inserts n and keeps the process's
// write lock until the returned function is called (which then waits for
// its commit).
func holdWriteLock(t *testing.T, db *sqldb.DB, n int) (release func()) {
	t.Helper()
	started, hold := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(context.Background(), func(tx *sql.Tx) error {
			close(started)
			<-hold
			_, err := tx.Exec(`INSERT INTO t (n, s) VALUES (?, 'holder')`, n)
			return err
		})
	}()
	<-started
	return func() {
		close(hold)
		if err := <-done; err != nil {
			t.Errorf("the lock holder's transaction: %v", err)
		}
	}
}

func rows(t *testing.T, db *sqldb.DB) []int {
	t.Helper()
	rs, err := db.Query(`SELECT n FROM t ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []int
	for rs.Next() {
		var n int
		if err := rs.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// TestGroupCommitKeepsEachTransactionItsOwn: transactions that queued while
// another held the write lock are committed together in groups, and
// still each one's outcome is its own: one that fails or panics leaves
// nothing behind (the panic comes back in its caller's goroutine) and the
// rest of its group commits.
func TestGroupCommitKeepsEachTransactionItsOwn(t *testing.T) {
	db := openSQLite(t)
	release := holdWriteLock(t, db, 0)
	tx0, commits0 := db.GroupStats()

	const n = 100 // more than one group holds
	errRefused := errors.New("refused")
	type result struct {
		err      error
		panicked any
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			defer func() { results[i].panicked = recover() }()
			results[i].err = db.InTx(context.Background(), func(tx *sql.Tx) error {
				if _, err := tx.Exec(`INSERT INTO t (n, s) VALUES (?, 'member')`, i); err != nil {
					return err
				}
				switch i % 3 {
				case 1:
					return fmt.Errorf("member %d: %w", i, errRefused)
				case 2:
					panic(fmt.Sprintf("member %d panics", i))
				}
				return nil
			})
		})
	}
	waitFor(t, "every member to queue", func() bool { return sqldb.Queued(db) == n })
	release()
	wg.Wait()

	var want []int
	want = append(want, 0)
	for i := 1; i <= n; i++ {
		r := results[i]
		switch i % 3 {
		case 1:
			if !errors.Is(r.err, errRefused) || r.panicked != nil {
				t.Errorf("member %d: got err %v, panic %v; want its own error", i, r.err, r.panicked)
			}
		case 2:
			if r.panicked != fmt.Sprintf("member %d panics", i) {
				t.Errorf("member %d: got err %v, panic %v; want its own panic", i, r.err, r.panicked)
			}
		default:
			if r.err != nil || r.panicked != nil {
				t.Errorf("member %d: got err %v, panic %v; want success", i, r.err, r.panicked)
			}
			want = append(want, i)
		}
	}
	if got := rows(t, db); !slices.Equal(got, want) {
		t.Errorf("rows %v, want exactly the holder's and the successful members' %v", got, want)
	}
	tx1, commits1 := db.GroupStats()
	// The holder's, then the queued ones in groups of at most 64.
	if tx1-tx0 != n || commits1-commits0 != 3 {
		t.Errorf("%d transactions in %d commits after the holder's; want %d in 3 (the holder's, then groups of 64 and 36)", tx1-tx0, commits1-commits0, n)
	}
}

// TestGroupCommitAndContexts: a caller whose context ends while it waits
// for the lock gets the context's error and its function never runs. One
// whose context ends in the middle of a long statement does not take its
// group down with it: interrupted, SQLite would roll back the whole
// transaction, so the statement runs to its end; the caller sees its
// context's error and only its own work is undone.
func TestGroupCommitAndContexts(t *testing.T) {
	db := openSQLite(t)
	release := holdWriteLock(t, db, 0)

	waiting, stopWaiting := context.WithCancel(context.Background())
	ran := false
	gaveUp := make(chan error, 1)
	go func() {
		gaveUp <- db.InTx(waiting, func(tx *sql.Tx) error {
			ran = true
			return nil
		})
	}()
	waitFor(t, "the waiting caller to queue", func() bool { return sqldb.Queued(db) == 1 })
	stopWaiting()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("a caller whose context ended while waiting got %v, want context.Canceled", err)
	}
	if q := sqldb.Queued(db); q != 0 {
		t.Errorf("%d left in the queue after the caller gave up", q)
	}

	var wg sync.WaitGroup
	errs := make([]error, 3)
	member := func(i int, fn func(ctx context.Context, tx *sql.Tx) error) {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errs[i-1] = db.InTx(ctx, func(tx *sql.Tx) error {
				if i == 2 {
					time.AfterFunc(20*time.Millisecond, cancel) // the caller goes away mid-statement
				}
				return fn(ctx, tx)
			})
		})
		waitFor(t, fmt.Sprintf("member %d to queue", i), func() bool { return sqldb.Queued(db) == i })
	}
	insert := func(n int) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (n, s) VALUES (?, 'member')`, n)
			return err
		}
	}
	member(1, insert(10))
	member(2, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (n, s)
			WITH RECURSIVE c(x) AS (SELECT 1000 UNION ALL SELECT x + 1 FROM c WHERE x < 400000)
			SELECT x, 'big' FROM c`); err != nil {
			return err
		}
		return ctx.Err()
	})
	member(3, insert(30))
	release()
	wg.Wait()
	if ran {
		t.Error("the function of a caller that gave up while waiting ran")
	}
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("members 1 and 3: %v, %v; want both committed", errs[0], errs[2])
	}
	if !errors.Is(errs[1], context.Canceled) {
		t.Errorf("member 2, whose context ended mid-statement: %v, want context.Canceled", errs[1])
	}
	if got, want := rows(t, db), []int{0, 10, 30}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

// BenchmarkConcurrentTransactions: 32 callers each running the small
// transaction of BenchmarkSmallTransactions, committed one by one (each
// caller takes a lock, begins, commits: what InTx did before group commit)
// beside InTx's group commit, on the same kind of database, same run.
func BenchmarkConcurrentTransactions(b *testing.B) {
	ctx := context.Background()
	work := func(tx *sql.Tx, i int64) error { return sqldbtest.SmallTx(ctx, tx, i) }
	run := func(b *testing.B, one func(i int64) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for range 32 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(b.N) {
						return
					}
					if err := one(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	}
	b.Run("one-by-one", func(b *testing.B) {
		db := openSQLite(b)
		var mu sync.Mutex
		run(b, func(i int64) error {
			mu.Lock()
			defer mu.Unlock()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := work(tx, i); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		})
	})
	b.Run("group", func(b *testing.B) {
		db := openSQLite(b)
		run(b, func(i int64) error {
			return db.InTx(ctx, func(tx *sql.Tx) error { return work(tx, i) })
		})
		txs, commits := db.GroupStats()
		b.ReportMetric(float64(txs)/float64(max(commits, 1)), "tx/commit")
	})
}
