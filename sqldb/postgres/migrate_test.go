package postgres_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestReplicasMigrateOneSchemaTogether: handles that open one new schema
// at once (as replicas of a service starting together do) all migrate it
// without error, and each migration is applied once.
func TestReplicasMigrateOneSchemaTogether(t *testing.T) {
	ctx := context.Background()
	url := sqldbtest.PostgresSchema(t)
	migrations := fstest.MapFS{
		"postgres/00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (n BIGINT PRIMARY KEY);\n-- +goose Down\nDROP TABLE a;\n")},
		"postgres/00002_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (n BIGINT PRIMARY KEY);\nINSERT INTO a (n) VALUES (1);\n-- +goose Down\nDROP TABLE b;\n")},
	}
	const replicas = 6
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	start := make(chan struct{})
	for range replicas {
		wg.Go(func() {
			db, err := sqldb.Open(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			<-start
			errs <- db.Migrate(ctx, migrations)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a replica's migration failed: %v", err)
		}
	}
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows the second migration inserted = %d, %v; want 1 (applied once)", n, err)
	}
}
