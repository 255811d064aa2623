// Package goosemigrate applies a dialect's migrations with goose, for the
// sqldb drivers.
package goosemigrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// Up applies the migrations in fsys that db has not had yet, in order,
// recording them in versionTable.
// opts add to the provider's (a session locker, so that processes
// migrating one database together take turns).
func Up(ctx context.Context, db *sql.DB, dialect goose.Dialect, fsys fs.FS, versionTable string, opts ...goose.ProviderOption) error {
	p, err := goose.NewProvider(dialect, db, fsys, append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithTableName(versionTable)}, opts...)...)
	if err != nil {
		return fmt.Errorf("sqldb: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqldb: migrate: %w", err)
	}
	return nil
}
