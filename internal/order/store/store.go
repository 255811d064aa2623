// Package store keeps order-service's orders and idempotency keys in SQL.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	orderevents "github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Store implements order.Store. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
	sagas  *saga.Engine
}

var _ order.Store = (*Store)(nil)

// New migrates db to the orders' schema and returns a store over it that
// writes its events through ob and starts the order's sagas with sagas in
// the same transactions (Create, StartCancel). The sagas end in the
// store's transactions too: their OnEnd is Ended's. ob and sagas are over
// db; the caller composes them (cmd's wiring, ordertest).
func New(ctx context.Context, db *sqldb.DB, ob *outbox.Outbox, sagas *saga.Engine) (*Store, error) {
	if err := db.Migrate(ctx, sqldb.MigrationsFS(migrations, "migrations")); err != nil {
		return nil, err
	}
	return &Store{db: db, outbox: ob, sagas: sagas}, nil
}

func (s *Store) Sagas(ctx context.Context, f saga.Filter) ([]*saga.Instance, error) {
	return s.sagas.List(ctx, f)
}

func (s *Store) Saga(ctx context.Context, id string) (*saga.Instance, error) {
	in, err := s.sagas.Get(ctx, id)
	if errors.Is(err, saga.ErrNotFound) {
		return nil, fault.New(fault.NotFound, "no saga %q", id)
	}
	return in, err
}

// Engine returns the saga engine: its Run fires step timers, its
// HandleReply takes the participants' replies.
func (s *Store) Engine() *saga.Engine { return s.sagas }

// DB returns the database, for the inbox.
func (s *Store) DB() *sqldb.DB { return s.db }

// Ended returns the OnEnd of one of the order's sagas: in the saga's
// ending transaction it applies fn's change to the order (on db) and
// writes its events through ob.
func Ended(db *sqldb.DB, ob *outbox.Outbox, fn func(order.Order, *saga.Instance, time.Time) (order.Order, []*bus.Message, error)) func(context.Context, *sql.Tx, *saga.Instance) error {
	s := &Store{db: db, outbox: ob}
	return func(ctx context.Context, tx *sql.Tx, in *saga.Instance) error {
		id, err := order.SagaOrder(in)
		if err != nil {
			return err
		}
		return s.apply(ctx, tx, id, func(o order.Order) (order.Order, []*bus.Message, error) {
			return fn(o, in, time.Now().UTC().Truncate(time.Millisecond))
		})
	}
}

// apply changes order id in tx by fn and writes the messages fn returns.
func (s *Store) apply(ctx context.Context, tx *sql.Tx, id int64, fn func(order.Order) (order.Order, []*bus.Message, error)) error {
	o, err := s.get(ctx, tx, id)
	if err != nil {
		return err
	}
	o, msgs, err := fn(o)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.db.Dialect.Rebind(`UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?`),
		string(o.Status), o.Reason, o.UpdatedAt.UnixMilli(), id); err != nil {
		return fmt.Errorf("update order %d: %w", id, err)
	}
	if err := appendEvents(ctx, s.db, s.outbox, tx, id, order.Event{At: o.UpdatedAt, Kind: order.EventStatus, Status: o.Status, Detail: o.Reason}); err != nil {
		return err
	}
	return s.outbox.Add(ctx, tx, orderevents.TopicOrders, msgs...)
}

// appendEvents adds evs to order id's history in tx, numbered after its
// last. Every writer of an order's history runs in a transaction that
// changes the order or one of its sagas, so two never number the same
// seq: one of two racing ones fails on the primary key and is retried
// (its message redelivered).
//
// The entries go out on the history topic through ob, in the same
// transaction, for live readers.
func appendEvents(ctx context.Context, db *sqldb.DB, ob *outbox.Outbox, tx *sql.Tx, id int64, evs ...order.Event) error {
	var last, user int64
	if err := tx.QueryRowContext(ctx, db.Dialect.Rebind(`SELECT user_id, (SELECT COALESCE(MAX(seq), 0) FROM order_events WHERE order_id = ?) FROM orders WHERE id = ?`), id, id).Scan(&user, &last); err != nil {
		return fmt.Errorf("order %d history: %w", id, err)
	}
	ins := db.Dialect.Rebind(`INSERT INTO order_events (order_id, seq, at, kind, status, saga, step, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	for i := range evs {
		ev := &evs[i]
		ev.Seq = last + int64(i) + 1
		if _, err := tx.ExecContext(ctx, ins, id, ev.Seq, ev.At.UnixMilli(), ev.Kind, string(ev.Status), ev.Saga, ev.Step, ev.Outcome, ev.Detail); err != nil {
			return fmt.Errorf("order %d history: %w", id, err)
		}
	}
	m, err := order.HistoryMessage(id, user, evs)
	if err != nil {
		return fmt.Errorf("order %d history: %w", id, err)
	}
	return ob.Add(ctx, tx, orderevents.TopicOrderHistory, m)
}

// Journal returns the saga engine's Journal for the order's sagas on db:
// each step (and a saga's start and end) joins the order's history in the
// transition's transaction. Ignored replies (late, duplicate) do not.
func Journal(db *sqldb.DB, ob *outbox.Outbox) func(ctx context.Context, tx *sql.Tx, in *saga.Instance, events []saga.Event) error {
	return func(ctx context.Context, tx *sql.Tx, in *saga.Instance, events []saga.Event) error {
		id, err := order.SagaOrder(in)
		if err != nil {
			return err
		}
		var evs []order.Event
		for _, ev := range events {
			if ev.Kind == saga.EventIgnored {
				continue
			}
			kind := order.EventStep
			if ev.Step == "" {
				kind = order.EventSaga
			}
			evs = append(evs, order.Event{At: ev.Time, Kind: kind, Saga: in.Saga, Step: ev.Step, Outcome: string(ev.Kind), Detail: ev.Detail})
		}
		if len(evs) == 0 {
			return nil
		}
		return appendEvents(ctx, db, ob, tx, id, evs...)
	}
}

// Events returns order id's history after seq after, oldest first.
func (s *Store) Events(ctx context.Context, id, after int64, limit int) ([]order.Event, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT seq, at, kind, status, saga, step, outcome, detail FROM order_events WHERE order_id = ? AND seq > ? ORDER BY seq LIMIT ?`), id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("order %d history: %w", id, err)
	}
	defer rows.Close()
	out := []order.Event{}
	for rows.Next() {
		var ev order.Event
		var at int64
		var status string
		if err := rows.Scan(&ev.Seq, &at, &ev.Kind, &status, &ev.Saga, &ev.Step, &ev.Outcome, &ev.Detail); err != nil {
			return nil, fmt.Errorf("order %d history: %w", id, err)
		}
		ev.At, ev.Status = time.UnixMilli(at).UTC(), order.Status(status)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Shipped marks a confirmed order shipped in tx (a ShipmentDispatched
// event), with its OrderShipped event.
func (s *Store) Shipped(ctx context.Context, tx *sql.Tx, id int64) error {
	err := s.apply(ctx, tx, id, func(o order.Order) (order.Order, []*bus.Message, error) {
		return order.Shipped(o, time.Now().UTC().Truncate(time.Millisecond))
	})
	if fault.Is(err, fault.NotFound) {
		return nil // not an order of this shop's database
	}
	return err
}

func (s *Store) Abort(ctx context.Context, id int64, reason string) error {
	err := s.sagas.Abort(ctx, strconv.FormatInt(id, 10), reason)
	switch {
	case errors.Is(err, saga.ErrEnded):
		return fault.New(fault.Conflict, "order %d has moved on; look again", id)
	case errors.Is(err, saga.ErrNotFound):
		return fault.New(fault.NotFound, "no order %d", id)
	}
	return err
}

func (s *Store) StartCancel(ctx context.Context, o order.Order) error {
	err := s.outbox.InTx(ctx, func(tx *sql.Tx) error {
		return s.sagas.Start(ctx, tx, order.SagaCancelOrder, order.CancelSagaID(o.ID), order.SagaData(o))
	})
	if err != nil && s.db.Dialect.IsUniqueViolation(err) {
		return fault.New(fault.Conflict, "order %d is being cancelled already", o.ID)
	}
	return err
}

// Outbox returns the outbox the store writes events to, for its relay.
func (s *Store) Outbox() *outbox.Outbox { return s.outbox }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) Create(ctx context.Context, o order.Order, key, hash string, events func(order.Order) ([]*bus.Message, error)) (order.Order, bool, error) {
	var saved order.Order
	created := false
	err := s.outbox.InTx(ctx, func(tx *sql.Tx) error {
		if key != "" {
			prev, prevHash, err := s.byKey(ctx, tx, o.UserID, key)
			if err == nil {
				if prevHash != hash {
					return fault.New(fault.Conflict, "the Idempotency-Key was used for a different order")
				}
				saved = prev
				return nil
			}
			if !fault.Is(err, fault.NotFound) {
				return err
			}
		}
		q := s.db.Dialect.Rebind
		err := tx.QueryRowContext(ctx, q(`INSERT INTO orders (user_id, status, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id`),
			o.UserID, string(o.Status), o.CreatedAt.UnixMilli(), o.UpdatedAt.UnixMilli()).Scan(&o.ID)
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		for i, it := range o.Items {
			if _, err := tx.ExecContext(ctx, q(`INSERT INTO order_items (order_id, line, sku, quantity) VALUES (?, ?, ?, ?)`),
				o.ID, i+1, it.SKU, it.Quantity); err != nil {
				return fmt.Errorf("insert order item: %w", err)
			}
		}
		if key != "" {
			if _, err := tx.ExecContext(ctx, q(`INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)`),
				o.UserID, key, hash, o.ID, time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("insert idempotency key: %w", err)
			}
		}
		msgs, err := events(o)
		if err != nil {
			return fmt.Errorf("order events: %w", err)
		}
		if err := s.outbox.Add(ctx, tx, orderevents.TopicOrders, msgs...); err != nil {
			return err
		}
		if err := appendEvents(ctx, s.db, s.outbox, tx, o.ID, order.Event{At: o.CreatedAt, Kind: order.EventStatus, Status: o.Status}); err != nil {
			return err
		}
		if err := s.sagas.Start(ctx, tx, order.SagaPlaceOrder, strconv.FormatInt(o.ID, 10), order.SagaData(o)); err != nil {
			return err
		}
		saved, created = o, true
		return nil
	})
	if err != nil && key != "" && s.db.Dialect.IsUniqueViolation(err) {
		// Another request with the same key committed first.
		prev, prevHash, kerr := s.ByIdempotencyKey(ctx, o.UserID, key)
		if kerr != nil {
			return order.Order{}, false, kerr
		}
		if prevHash != hash {
			return order.Order{}, false, fault.New(fault.Conflict, "the Idempotency-Key was used for a different order")
		}
		return prev, false, nil
	}
	return saved, created, err
}

func (s *Store) ByIdempotencyKey(ctx context.Context, userID int64, key string) (order.Order, string, error) {
	return s.byKey(ctx, s.db, userID, key)
}

func (s *Store) byKey(ctx context.Context, q querier, userID int64, key string) (order.Order, string, error) {
	var id int64
	var hash string
	err := q.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT order_id, request_hash FROM idempotency_keys WHERE user_id = ? AND key = ?`), userID, key).Scan(&id, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return order.Order{}, "", fault.New(fault.NotFound, "no order for that key")
	}
	if err != nil {
		return order.Order{}, "", fmt.Errorf("idempotency key: %w", err)
	}
	o, err := s.get(ctx, q, id)
	return o, hash, err
}

func (s *Store) Status(ctx context.Context, id int64) (owner int64, st order.Status, err error) {
	var status string
	err = s.db.QueryRowContext(ctx, s.db.Dialect.Rebind(`SELECT user_id, status FROM orders WHERE id = ?`), id).Scan(&owner, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", fault.New(fault.NotFound, "no order %d", id)
	}
	if err != nil {
		return 0, "", fmt.Errorf("order %d status: %w", id, err)
	}
	return owner, order.Status(status), nil
}

// Settled reports which of ids have their verdict (no longer pending),
// in one query.
func (s *Store) Settled(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, string(order.StatusPending))
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT id FROM orders WHERE status != ? AND id IN (`+sqldb.Marks(len(ids))+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("settled orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("settled orders: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// Get returns the order with the history of its sagas.
func (s *Store) Get(ctx context.Context, id int64) (order.Order, error) {
	o, err := s.get(ctx, s.db, id)
	if err != nil {
		return o, err
	}
	sagas := []string{strconv.FormatInt(id, 10)}
	if o.Status != order.StatusPending && o.Status != order.StatusRejected {
		sagas = append(sagas, order.CancelSagaID(id)) // only a confirmed order can have one
	}
	for _, sid := range sagas {
		in, err := s.sagas.Get(ctx, sid)
		if errors.Is(err, saga.ErrNotFound) {
			continue
		}
		if err != nil {
			return o, err
		}
		for _, ev := range in.History {
			o.Steps = append(o.Steps, order.Step{Saga: in.Saga, Step: ev.Step, Event: string(ev.Kind), Detail: ev.Detail, At: ev.Time})
		}
	}
	return o, nil
}

func (s *Store) get(ctx context.Context, q querier, id int64) (order.Order, error) {
	os, err := s.query(ctx, q, `WHERE id = ?`, id)
	if err != nil {
		return order.Order{}, err
	}
	if len(os) == 0 {
		return order.Order{}, fault.New(fault.NotFound, "no order %d", id)
	}
	return os[0], nil
}

func (s *Store) List(ctx context.Context, userID, before int64, limit int) ([]order.Order, error) {
	if before <= 0 {
		return s.query(ctx, s.db, `WHERE user_id = ? ORDER BY id DESC LIMIT ?`, userID, limit)
	}
	return s.query(ctx, s.db, `WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, userID, before, limit)
}

// query reads the orders a WHERE clause selects, with their items, in two
// queries whatever their number.
func (s *Store) query(ctx context.Context, q querier, where string, args ...any) ([]order.Order, error) {
	rows, err := q.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT id, user_id, status, reason, created_at, updated_at FROM orders `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("query orders: %w", err)
	}
	defer rows.Close()
	orders := []order.Order{}
	index := map[int64]int{}
	for rows.Next() {
		var o order.Order
		var status string
		var created, updated int64
		if err := rows.Scan(&o.ID, &o.UserID, &status, &o.Reason, &created, &updated); err != nil {
			return nil, fmt.Errorf("scan order: %w", err)
		}
		o.Status = order.Status(status)
		o.CreatedAt, o.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		o.Items = []order.Item{}
		index[o.ID] = len(orders)
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query orders: %w", err)
	}
	rows.Close()
	if len(orders) == 0 {
		return orders, nil
	}
	ids := make([]any, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	irows, err := q.QueryContext(ctx, s.db.Dialect.Rebind(`SELECT order_id, sku, quantity FROM order_items WHERE order_id IN (`+sqldb.Marks(len(ids))+`) ORDER BY order_id, line`), ids...)
	if err != nil {
		return nil, fmt.Errorf("query order items: %w", err)
	}
	defer irows.Close()
	for irows.Next() {
		var id int64
		var it order.Item
		if err := irows.Scan(&id, &it.SKU, &it.Quantity); err != nil {
			return nil, fmt.Errorf("scan order item: %w", err)
		}
		o := &orders[index[id]]
		o.Items = append(o.Items, it)
	}
	return orders, irows.Err()
}
