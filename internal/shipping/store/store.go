// Package store keeps shipping-service's shipments in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

var tracer = otel.Tracer("github.com/junction-go/junction/internal/shipping/store")

// Store keeps shipments. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

var _ shipping.Store = (*Store)(nil)

// New migrates db (with the outbox's tables) and returns a store over it.
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

// Outbox returns the outbox replies and events go to.
func (s *Store) Outbox() *outbox.Outbox { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) Get(ctx context.Context, orderID int64) (shipping.Shipment, error) {
	return s.get(ctx, s.db, orderID)
}

func (s *Store) get(ctx context.Context, q querier, orderID int64) (shipping.Shipment, error) {
	sh := shipping.Shipment{OrderID: orderID}
	var state string
	var dispatchAt, dispatchedAt sql.NullInt64
	var updated int64
	err := q.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT user_id, state, reason, tracking_code, dispatch_at, dispatched_at, updated_at FROM shipments WHERE order_id = ?`), orderID).
		Scan(&sh.UserID, &state, &sh.Reason, &sh.TrackingCode, &dispatchAt, &dispatchedAt, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return sh, fault.New(fault.NotFound, "no shipment for order %d", orderID)
	}
	if err != nil {
		return sh, fmt.Errorf("shipment %d: %w", orderID, err)
	}
	sh.State = shipping.State(state)
	if dispatchAt.Valid {
		sh.DispatchAt = time.UnixMilli(dispatchAt.Int64).UTC()
	}
	if dispatchedAt.Valid {
		sh.DispatchedAt = time.UnixMilli(dispatchedAt.Int64).UTC()
	}
	sh.UpdatedAt = time.UnixMilli(updated).UTC()
	return sh, nil
}

// Load returns the order's shipment as tx sees it, and whether there is
// one.
func (s *Store) Load(ctx context.Context, tx *sql.Tx, orderID int64) (shipping.Shipment, bool, error) {
	sh, err := s.get(ctx, tx, orderID)
	if fault.Is(err, fault.NotFound) {
		return shipping.Shipment{}, false, nil
	}
	return sh, err == nil, err
}

// Save writes sh in tx, as a new shipment or over the one of its order.
func (s *Store) Save(ctx context.Context, tx *sql.Tx, sh shipping.Shipment) error {
	// The trace of the work saving it, so the dispatch continues it.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO shipments (order_id, user_id, state, reason, tracking_code, dispatch_at, dispatched_at, updated_at, trace)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id) DO UPDATE SET user_id = excluded.user_id, state = excluded.state, reason = excluded.reason,
			tracking_code = excluded.tracking_code, dispatch_at = excluded.dispatch_at, dispatched_at = excluded.dispatched_at, updated_at = excluded.updated_at,
			trace = CASE WHEN excluded.trace <> '' THEN excluded.trace ELSE shipments.trace END`),
		sh.OrderID, sh.UserID, string(sh.State), sh.Reason, sh.TrackingCode, millis(sh.DispatchAt), millis(sh.DispatchedAt), sh.UpdatedAt.UnixMilli(), carrier.Get("traceparent"))
	if err != nil {
		return fmt.Errorf("save shipment %d: %w", sh.OrderID, err)
	}
	return nil
}

// millis is t in Unix milliseconds, NULL when zero.
func millis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// dispatchOne dispatches shipment id in a span of the trace that last
// changed it (the order's confirmation).
func (s *Store) dispatchOne(ctx context.Context, tx *sql.Tx, id int64, traceparent string, dispatch func(shipping.Shipment) (shipping.Shipment, []*bus.Message, error)) error {
	if traceparent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	ctx, span := tracer.Start(ctx, "dispatch shipment", trace.WithAttributes(attribute.Int64("order.id", id)))
	defer span.End()
	sh, err := s.get(ctx, tx, id)
	if err != nil {
		return err
	}
	next, msgs, err := dispatch(sh)
	if err != nil {
		return err
	}
	if err := s.Save(ctx, tx, next); err != nil {
		return err
	}
	return s.outbox.Add(ctx, tx, events.TopicShipments, msgs...)
}

// DispatchDue hands every ready shipment whose time has come (at most 256)
// to dispatch and saves what it returns, with the messages it returns, in
// one transaction, through the outbox; it returns how many.
func (s *Store) DispatchDue(ctx context.Context, now time.Time, dispatch func(shipping.Shipment) (shipping.Shipment, []*bus.Message, error)) (int, error) {
	n := 0
	err := s.outbox.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT order_id, trace FROM shipments WHERE state = ? AND dispatch_at <= ? ORDER BY dispatch_at LIMIT 256`), string(shipping.Ready), now.UnixMilli())
		if err != nil {
			return err
		}
		var due []int64
		traces := map[int64]string{}
		for rows.Next() {
			var id int64
			var trace string
			if err := rows.Scan(&id, &trace); err != nil {
				rows.Close()
				return err
			}
			due = append(due, id)
			traces[id] = trace
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range due {
			if err := s.dispatchOne(ctx, tx, id, traces[id], dispatch); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}
