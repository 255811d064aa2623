// Package store keeps inventory-service's products in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements inventory.Store. It is safe for concurrent use.
type Store struct{ db *sqldb.DB }

var _ inventory.Store = (*Store)(nil)

// New migrates db to the current schema and returns a store over it.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

const cols = `sku, name, description, price, currency, stock`

func scan(row interface{ Scan(...any) error }) (inventory.Product, error) {
	var p inventory.Product
	err := row.Scan(&p.SKU, &p.Name, &p.Description, &p.Price, &p.Currency, &p.Stock)
	return p, err
}

func (s *Store) Products(ctx context.Context) ([]inventory.Product, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM products ORDER BY sku`)
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	defer rows.Close()
	ps := []inventory.Product{}
	for rows.Next() {
		p, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("products: %w", err)
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

func (s *Store) Product(ctx context.Context, sku string) (inventory.Product, error) {
	p, err := scan(s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT `+cols+` FROM products WHERE sku = ?`), sku))
	if errors.Is(err, sql.ErrNoRows) {
		return inventory.Product{}, fault.New(fault.NotFound, "no product %q", sku)
	}
	if err != nil {
		return inventory.Product{}, fmt.Errorf("product %q: %w", sku, err)
	}
	return p, nil
}

func (s *Store) AddProducts(ctx context.Context, ps []inventory.Product) (int, error) {
	added := 0
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		q := s.db.Dialect.Rebind(`INSERT INTO products (` + cols + `) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO NOTHING`)
		for _, p := range ps {
			res, err := tx.ExecContext(ctx, q, p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Stock)
			if err != nil {
				return fmt.Errorf("add product %q: %w", p.SKU, err)
			}
			n, _ := res.RowsAffected()
			added += int(n)
		}
		return nil
	})
	return added, err
}
