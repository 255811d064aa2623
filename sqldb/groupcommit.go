package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group commit for SQLite.
//
// A SQLite file has one writer at a time, and each commit costs the WAL
// writes of every page it touched plus the file locks around it. On the
// order path most transactions are small (an inbox row, an effect, an
// outbox row) and touch the same few pages, so committing them one by one
// made commits and their system calls a large share of every service's
// CPU. Here the transactions that queue for the write lock while one holds
// it are run by the holder, one after another in one transaction, each
// inside its own savepoint, and committed once:
//
//   - fn's error or panic rolls back to its savepoint: only its own work
//     is undone, and the caller gets its error (or the panic, re-raised in
//     the caller's goroutine);
//   - the others of the group commit together; if the commit fails, each
//     of them gets the error (nothing of the group is written);
//   - a caller whose ctx ends while it waits is taken out of the queue and
//     gets ctx's error, nothing run.
//
// A group is one transaction, so its members see one another's writes in
// order, exactly as if they had run one after another (which they did).

// maxGroup bounds the transactions committed together.
const maxGroup = 64

type groupCommit struct {
	db   *sql.DB
	lock chan struct{} // the process's turn to write

	mu    sync.Mutex
	queue []*txRequest

	transactions, commits atomic.Int64 // members run, groups committed
}

type txRequest struct {
	ctx   context.Context
	fn    func(*sql.Tx) error
	taken bool       // by a group (under mu)
	done  chan error // buffered: the outcome
}

func newGroupCommit(db *sql.DB) *groupCommit {
	return &groupCommit{db: db, lock: make(chan struct{}, 1)}
}

func (g *groupCommit) do(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	r := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	g.mu.Unlock()
	select {
	case g.lock <- struct{}{}:
		g.lead(r)
		<-g.lock
	case err := <-r.done:
		return outcome(err)
	case <-ctx.Done():
		if g.withdraw(r) {
			return fmt.Errorf("begin: %w", ctx.Err())
		}
	}
	return outcome(<-r.done)
}

// outcome re-raises a panic of the caller's own fn.
func outcome(err error) error {
	if p, ok := err.(*panicked); ok {
		panic(p.value)
	}
	return err
}

// withdraw takes r out of the queue if no group has taken it yet.
func (g *groupCommit) withdraw(r *txRequest) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.taken {
		return false
	}
	for i, q := range g.queue {
		if q == r {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			break
		}
	}
	return true
}

// lead runs groups, holding the lock, until own has been taken by one (it
// may have been by the previous holder). What is still queued then belongs
// to callers who are waiting for the lock and will run it.
func (g *groupCommit) lead(own *txRequest) {
	for {
		g.mu.Lock()
		if own.taken {
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), maxGroup)
		group := make([]*txRequest, n)
		copy(group, g.queue)
		g.queue = append(g.queue[:0], g.queue[n:]...)
		for _, r := range group {
			r.taken = true
		}
		g.mu.Unlock()
		g.run(group)
	}
}

// savepoint names the savepoint each member of a group runs in.
const savepoint = "sqldb_group_member"

// run runs a group as one transaction and tells each member its outcome.
func (g *groupCommit) run(group []*txRequest) {
	g.transactions.Add(int64(len(group)))
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		for _, r := range group {
			r.done <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	if len(group) == 1 {
		r := group[0]
		if err := runFn(tx, r.fn); err != nil {
			_ = tx.Rollback()
			r.done <- err
			return
		}
		if err := tx.Commit(); err != nil {
			r.done <- fmt.Errorf("commit: %w", err)
			return
		}
		g.commits.Add(1)
		r.done <- nil
		return
	}
	var ok []*txRequest
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- fmt.Errorf("begin: %w", err)
			continue
		}
		if _, err := tx.Exec("SAVEPOINT " + savepoint); err != nil {
			r.done <- fmt.Errorf("begin: %w", err)
			g.abort(tx, ok, err, group[i+1:])
			return
		}
		if err := runFn(tx, r.fn); err != nil {
			r.done <- err
			_, rerr := tx.Exec("ROLLBACK TO " + savepoint)
			if rerr == nil {
				_, rerr = tx.Exec("RELEASE " + savepoint)
			}
			if rerr != nil {
				g.abort(tx, ok, rerr, group[i+1:])
				return
			}
			continue
		}
		if _, err := tx.Exec("RELEASE " + savepoint); err != nil {
			g.abort(tx, append(ok, r), err, group[i+1:])
			return
		}
		ok = append(ok, r)
	}
	if err := tx.Commit(); err != nil {
		for _, r := range ok {
			r.done <- fmt.Errorf("commit: %w", err)
		}
		return
	}
	g.commits.Add(1)
	for _, r := range ok {
		r.done <- nil
	}
}

// abort rolls back a group whose transaction failed, tells the members
// that had succeeded so far that nothing of theirs was written, and runs
// the members that had not run yet as a group of their own.
func (g *groupCommit) abort(tx *sql.Tx, ok []*txRequest, cause error, rest []*txRequest) {
	_ = tx.Rollback()
	err := fmt.Errorf("commit: %w", errors.Join(errGroupFailed, cause))
	for _, r := range ok {
		r.done <- err
	}
	if len(rest) > 0 {
		g.run(rest)
	}
}

var errGroupFailed = errors.New("sqldb: the transaction this one was committed with failed")

// queued is how many transactions wait for a group (for tests).
func (g *groupCommit) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// GroupStats says how many transactions ran on a SQLite database and in how
// many commits: their ratio is how well group commit batches the process's
// writes. Both are 0 for PostgreSQL.
func (db *DB) GroupStats() (transactions, commits int64) {
	if db.group == nil {
		return 0, 0
	}
	return db.group.transactions.Load(), db.group.commits.Load()
}
