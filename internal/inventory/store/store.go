// Package store keeps inventory-service's products in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements inventory.Store. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

var _ inventory.Store = (*Store)(nil)

// New migrates db to the current schema and returns a store over it.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, outbox: ob}, nil
}

// Outbox returns the outbox replies are written to, for its relay.
func (s *Store) Outbox() *outbox.Outbox { return s.outbox }

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

// DB returns the database, for the idempotent consumer's inbox.
func (s *Store) DB() *sqldb.DB { return s.db }

// Reservation returns the reservation of orderID, or fault.NotFound.
func (s *Store) Reservation(ctx context.Context, q querier, orderID int64) (inventory.Reservation, error) {
	r := inventory.Reservation{OrderID: orderID}
	var state string
	err := q.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT state, total, currency, reason FROM reservations WHERE order_id = ?`), orderID).
		Scan(&state, &r.Total, &r.Currency, &r.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fault.New(fault.NotFound, "no reservation for order %d", orderID)
	}
	if err != nil {
		return r, fmt.Errorf("reservation %d: %w", orderID, err)
	}
	r.State = inventory.ReservationState(state)
	return r, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// In returns the reservations as tx sees and changes them, for the
// domain's Reserve, ReleaseOf and CommitOf.
func (s *Store) In(tx *sql.Tx) inventory.Reservations { return txStore{s: s, tx: tx} }

type txStore struct {
	s  *Store
	tx *sql.Tx
}

var _ inventory.Reservations = txStore{}

func (t txStore) Load(ctx context.Context, orderID int64) (inventory.Reservation, bool, error) {
	r, err := t.s.Reservation(ctx, t.tx, orderID)
	if fault.Is(err, fault.NotFound) {
		return inventory.Reservation{}, false, nil
	}
	return r, err == nil, err
}

func (t txStore) Save(ctx context.Context, r inventory.Reservation, held []inventory.Line) error {
	if err := t.save(ctx, r); err != nil {
		return err
	}
	for _, l := range held {
		if _, err := t.tx.ExecContext(ctx, t.s.db.Dialect.Rebind(`INSERT INTO reservation_items (order_id, sku, quantity) VALUES (?, ?, ?)`), r.OrderID, l.SKU, l.Quantity); err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
	}
	return nil
}

func (t txStore) save(ctx context.Context, r inventory.Reservation) error {
	_, err := t.tx.ExecContext(ctx, t.s.db.Dialect.Rebind(`INSERT INTO reservations (order_id, state, total, currency, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, total = excluded.total, currency = excluded.currency, reason = excluded.reason, updated_at = excluded.updated_at`),
		r.OrderID, string(r.State), r.Total, r.Currency, r.Reason, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("save reservation %d: %w", r.OrderID, err)
	}
	return nil
}

// Take takes each line by a conditional update (only if that much is on
// hand, so stock never goes below zero), and puts back what it took if a
// later line is short.
func (t txStore) Take(ctx context.Context, lines []inventory.Line) (taken map[string]inventory.Product, short *inventory.Line, p inventory.Product, found bool, err error) {
	s, tx := t.s, t.tx
	q := s.db.Dialect.Rebind
	take := q(`UPDATE products SET stock = stock - ? WHERE sku = ? AND stock >= ?`)
	taken = map[string]inventory.Product{}
	var done []inventory.Line
	for _, l := range lines {
		res, err := tx.ExecContext(ctx, take, l.Quantity, l.SKU, l.Quantity)
		if err != nil {
			return nil, nil, inventory.Product{}, false, fmt.Errorf("reserve %s: %w", l.SKU, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			p, err := s.productTx(ctx, tx, l.SKU)
			if err != nil && !fault.Is(err, fault.NotFound) {
				return nil, nil, p, false, err
			}
			for _, t := range done { // put back what this order took
				if _, err := tx.ExecContext(ctx, q(`UPDATE products SET stock = stock + ? WHERE sku = ?`), t.Quantity, t.SKU); err != nil {
					return nil, nil, p, false, fmt.Errorf("reserve: put back %s: %w", t.SKU, err)
				}
			}
			return nil, &l, p, err == nil, nil
		}
		p, err := s.productTx(ctx, tx, l.SKU)
		if err != nil {
			return nil, nil, p, false, err
		}
		taken[l.SKU] = p
		done = append(done, l)
	}
	return taken, nil, inventory.Product{}, false, nil
}

func (s *Store) productTx(ctx context.Context, tx *sql.Tx, sku string) (inventory.Product, error) {
	p, err := scan(tx.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT `+cols+` FROM products WHERE sku = ?`), sku))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fault.New(fault.NotFound, "no product %q", sku)
	}
	if err != nil {
		return p, fmt.Errorf("product %q: %w", sku, err)
	}
	return p, nil
}

func (t txStore) Restock(ctx context.Context, orderID int64) error {
	if _, err := t.tx.ExecContext(ctx, t.s.db.Dialect.Rebind(`UPDATE products SET stock = stock + (SELECT quantity FROM reservation_items i WHERE i.order_id = ? AND i.sku = products.sku)
		WHERE sku IN (SELECT sku FROM reservation_items WHERE order_id = ?)`), orderID, orderID); err != nil {
		return fmt.Errorf("restock %d: %w", orderID, err)
	}
	return nil
}

// Held returns, per SKU, the units reserved and committed: with the stock
// on hand they add up to what there was (the conservation check).
func (s *Store) Held(ctx context.Context) (map[string][2]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT i.sku, r.state, SUM(i.quantity) FROM reservation_items i JOIN reservations r ON r.order_id = i.order_id
		WHERE r.state IN ('reserved', 'committed') GROUP BY i.sku, r.state`)
	if err != nil {
		return nil, fmt.Errorf("held stock: %w", err)
	}
	defer rows.Close()
	out := map[string][2]int64{}
	for rows.Next() {
		var sku, state string
		var n int64
		if err := rows.Scan(&sku, &state, &n); err != nil {
			return nil, err
		}
		h := out[sku]
		if state == string(inventory.Reserved) {
			h[0] = n
		} else {
			h[1] = n
		}
		out[sku] = h
	}
	return out, rows.Err()
}
