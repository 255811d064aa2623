package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestServiceDatabases: on PostgreSQL each service gets a schema and a
// role of its own; its URL reaches its own tables and no other service's,
// and a second up on the same database is refused while the first runs.
func TestServiceDatabases(t *testing.T) {
	probe, admin := sqldbtest.PostgresServer(t)
	ctx := context.Background()
	// Names of their own, so the test never touches a real up's roles.
	run := fmt.Sprintf("t%d", time.Now().UnixNano())
	a, b := run+"-a-service", run+"-b-service"
	urls, release, err := serviceDatabases(ctx, admin, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		release()
		for _, n := range []string{a, b} {
			s := strings.ReplaceAll(n, "-", "_")
			_, _ = probe.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+s+`" CASCADE`)
			_, _ = probe.ExecContext(ctx, `DROP ROLE IF EXISTS "junction_`+s+`"`)
		}
	})
	if _, _, err := serviceDatabases(ctx, admin, []string{a, b}); err == nil || !strings.Contains(err.Error(), "another junction up") {
		t.Errorf("a second up on the same database = %v, want it refused", err)
	}
	open := func(name string) *sqldb.DB {
		t.Helper()
		db, err := sqldb.Open(ctx, urls[name])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dbA, dbB := open(a), open(b)
	if _, err := dbA.ExecContext(ctx, `CREATE TABLE secrets (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := dbA.ExecContext(ctx, `INSERT INTO secrets VALUES ('mine')`); err != nil {
		t.Fatal(err)
	}
	var where string
	if err := dbA.QueryRowContext(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'secrets'`).Scan(&where); err != nil || where != strings.ReplaceAll(a, "-", "_") {
		t.Errorf("a's table is in schema %q (%v), want its own", where, err)
	}
	var v string
	err = dbB.QueryRowContext(ctx, `SELECT v FROM "`+strings.ReplaceAll(a, "-", "_")+`".secrets`).Scan(&v)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("b reading a's table = %q, %v; want permission denied", v, err)
	}
	release()
	again, releaseAgain, err := serviceDatabases(ctx, admin, []string{a, b})
	if err != nil {
		t.Fatalf("up again after the first stopped: %v", err)
	}
	releaseAgain()
	if again[a] == urls[a] {
		t.Error("the role's password stayed the same across ups, want a new one each start")
	}
}

func TestCheckDatabaseURL(t *testing.T) {
	for _, bad := range []string{"mysql://x", "postgres://", "/tmp/x.db", "postgres://h/db?search_path=x", "::"} {
		if err := checkDatabaseURL("--database", bad); err == nil {
			t.Errorf("%q accepted, want an error", bad)
		}
	}
	for _, good := range []string{"", "postgres://127.0.0.1:5432/test", "postgresql://u:p@h/db?sslmode=require"} {
		if err := checkDatabaseURL("--database", good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}
