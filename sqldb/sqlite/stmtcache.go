package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"

	msqlite "modernc.org/sqlite"
)

// SQLite compiles every statement it runs. database/sql hands a query with
// arguments straight to the driver, and modernc's driver compiles it each
// time; on the order path that parsing was about a tenth of all CPU. So each
// SQLite connection keeps its statements compiled, by query text, and runs
// a query again with the compiled one. A statement whose rows are still
// open is not shared: a second use meanwhile compiles its own, as before.

// maxCachedStmts bounds the statements one connection keeps compiled.
const maxCachedStmts = 256

// cachingConnector opens modernc SQLite connections that keep their
// statements.
type cachingConnector struct {
	dsn string
	drv *msqlite.Driver
}

func (c cachingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(sqliteConn)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("sqldb: the SQLite driver's connection lacks a context interface")
	}
	return &cachingConn{sqliteConn: inner, stmts: map[string]*cachedStmt{}}, nil
}

func (c cachingConnector) Driver() driver.Driver { return c.drv }

// sqliteConn is what modernc's connection implements and database/sql
// uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type compiledStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type cachedStmt struct {
	stmt compiledStmt
	busy bool // its rows are open
}

// cachingConn is used by one goroutine at a time (database/sql's rule for
// a driver connection), so it needs no lock.
type cachingConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
	inTx  bool // a transaction is open
}

// cached returns query's compiled statement, compiling it the first time;
// nil when it cannot be kept (then the caller runs the query uncached and
// gets any error from there).
func (c *cachingConn) cached(ctx context.Context, query string) *cachedStmt {
	if s, ok := c.stmts[query]; ok {
		return s
	}
	if len(c.stmts) >= maxCachedStmts {
		return nil
	}
	ds, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	cs, ok := ds.(compiledStmt)
	if !ok {
		_ = ds.Close()
		return nil
	}
	s := &cachedStmt{stmt: cs}
	c.stmts[query] = s
	return s
}

// BeginTx begins a transaction; until it ends, its statements ignore the
// cancellation of their contexts. modernc's driver interrupts a cancelled
// statement, and SQLite then rolls back the whole transaction, which may
// hold other callers' work (group commit); the statements are short, and
// the caller sees its own context's end anyway.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.sqliteConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return txEnd{Tx: tx, c: c}, nil
}

type txEnd struct {
	driver.Tx
	c *cachingConn
}

func (t txEnd) Commit() error   { t.c.inTx = false; return t.Tx.Commit() }
func (t txEnd) Rollback() error { t.c.inTx = false; return t.Tx.Rollback() }

func (c *cachingConn) stmtContext(ctx context.Context) context.Context {
	if c.inTx {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ctx = c.stmtContext(ctx)
	s := c.cached(ctx, query)
	if s == nil || s.busy {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return s.stmt.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ctx = c.stmtContext(ctx)
	s := c.cached(ctx, query)
	if s == nil || s.busy {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, stmt: s}, nil
}

// Close finalizes the kept statements, then closes the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.stmt.Close())
		delete(c.stmts, q)
	}
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

// cachedRows frees its statement for the next use when closed.
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.busy = false
	return err
}
