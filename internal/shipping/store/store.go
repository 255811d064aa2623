// Package store keeps shipping-service's shipments in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

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

// Schedule books the order's shipment in tx and returns it: an order
// booked before gets the first booking back (or the cancel that came
// first); refuse, when set, refuses a new booking with that reason.
func (s *Store) Schedule(ctx context.Context, tx *sql.Tx, orderID, userID int64, refuse string) (shipping.Shipment, error) {
	if sh, err := s.get(ctx, tx, orderID); !fault.Is(err, fault.NotFound) {
		return sh, err
	}
	sh := shipping.Shipment{OrderID: orderID, UserID: userID, State: shipping.Scheduled, UpdatedAt: time.Now().UTC()}
	if refuse != "" {
		sh.State, sh.Reason = shipping.Refused, refuse
	}
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`INSERT INTO shipments (order_id, user_id, state, reason, updated_at) VALUES (?, ?, ?, ?, ?)`),
		orderID, userID, string(sh.State), sh.Reason, sh.UpdatedAt.UnixMilli())
	if err != nil {
		return sh, fmt.Errorf("schedule %d: %w", orderID, err)
	}
	return sh, nil
}

// Cancel cancels the order's shipment in tx unless it was dispatched, and
// returns it. A cancel before any booking leaves a Cancelled mark.
func (s *Store) Cancel(ctx context.Context, tx *sql.Tx, orderID int64) (shipping.Shipment, error) {
	q := s.db.Dialect.Rebind
	sh, err := s.get(ctx, tx, orderID)
	now := time.Now().UTC()
	if fault.Is(err, fault.NotFound) {
		sh = shipping.Shipment{OrderID: orderID, State: shipping.Cancelled, Reason: "cancelled before it was booked", UpdatedAt: now}
		_, err = tx.ExecContext(ctx, q(`INSERT INTO shipments (order_id, state, reason, updated_at) VALUES (?, ?, ?, ?)`), orderID, string(sh.State), sh.Reason, now.UnixMilli())
		return sh, err
	}
	if err != nil || (sh.State != shipping.Scheduled && sh.State != shipping.Ready) {
		return sh, err
	}
	sh.State = shipping.Cancelled
	_, err = tx.ExecContext(ctx, q(`UPDATE shipments SET state = ?, dispatch_at = NULL, updated_at = ? WHERE order_id = ?`), string(sh.State), now.UnixMilli(), orderID)
	return sh, err
}

// Confirmed starts the dispatch clock of a scheduled shipment: it leaves
// at dispatchAt.
func (s *Store) Confirmed(ctx context.Context, tx *sql.Tx, orderID int64, dispatchAt time.Time) error {
	_, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE shipments SET state = ?, dispatch_at = ?, updated_at = ? WHERE order_id = ? AND state = ?`),
		string(shipping.Ready), dispatchAt.UnixMilli(), time.Now().UnixMilli(), orderID, string(shipping.Scheduled))
	return err
}

// DispatchDue dispatches every ready shipment whose time has come, each
// with its ShipmentDispatched event in the same transaction, and returns
// how many.
func (s *Store) DispatchDue(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.outbox.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT order_id, user_id FROM shipments WHERE state = 'ready' AND dispatch_at <= ? ORDER BY dispatch_at LIMIT 256`), now.UnixMilli())
		if err != nil {
			return err
		}
		type due struct{ order, user int64 }
		var ds []due
		for rows.Next() {
			var d due
			if err := rows.Scan(&d.order, &d.user); err != nil {
				rows.Close()
				return err
			}
			ds = append(ds, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, d := range ds {
			id := strconv.FormatInt(d.order, 10)
			code := fmt.Sprintf("JX%08d", d.order)
			if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE shipments SET state = 'dispatched', tracking_code = ?, dispatched_at = ?, updated_at = ? WHERE order_id = ?`),
				code, now.UnixMilli(), now.UnixMilli(), d.order); err != nil {
				return err
			}
			body, err := json.Marshal(events.ShipmentDispatched{Event: events.TypeShipmentDispatched, OrderID: d.order, UserID: d.user, TrackingCode: code, DispatchedAt: now.UTC()})
			if err != nil {
				return err
			}
			if err := s.outbox.Add(ctx, tx, events.TopicShipments, &bus.Message{
				ID: "shipment-" + id + "-dispatched", Type: events.TypeShipmentDispatched, Source: events.SourceShippingService,
				Time: now.UTC(), Key: id, CorrelationID: id, Body: body,
			}); err != nil {
				return err
			}
		}
		n = len(ds)
		return nil
	})
	return n, err
}

// Run dispatches due shipments every poll until ctx is done; failures are
// logged and tried again.
func (s *Store) Run(ctx context.Context, poll time.Duration, log *slog.Logger) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.DispatchDue(ctx, time.Now()); err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "dispatch", "err", err)
			}
		}
	}
}
