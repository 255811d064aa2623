package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/sqlite"
)

// TestReplicasMigrateOneFileTogether: handles that open one new file at
// once (as replicas of a service starting together do) all migrate it
// without error, and each migration is applied once.
func TestReplicasMigrateOneFileTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	migrations := fstest.MapFS{
		"sqlite/00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (n INTEGER PRIMARY KEY);\n-- +goose Down\nDROP TABLE a;\n")},
		"sqlite/00002_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (n INTEGER PRIMARY KEY);\nINSERT INTO a (n) VALUES (1);\n-- +goose Down\nDROP TABLE b;\n")},
	}
	const replicas = 6
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			db, err := sqldb.Open(context.Background(), path)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(context.Background(), migrations)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a replica's migration failed: %v", err)
		}
	}
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows the second migration inserted = %d, %v; want 1 (applied once)", n, err)
	}
}
