// Package order is order-service's domain: orders, who may see them, and
// placing one exactly once per idempotency key.
package order

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/saga"
)

// Status is where an order is in its life.
type Status string

// Statuses.
const (
	StatusPending   Status = "pending"   // the saga is running
	StatusConfirmed Status = "confirmed" // stock held, payment taken, shipment booked
	StatusShipped   Status = "shipped"   // the parcel has left
	StatusRejected  Status = "rejected"  // a step failed; everything was undone (Reason)
	StatusCancelled Status = "cancelled" // the customer cancelled; everything was undone
	// StatusNeedsAttention: an undo kept failing; staff must finish it.
	StatusNeedsAttention Status = "needs_attention"
)

// Terminal reports whether nothing more will happen to an order in s
// (shipped counts: only a person could change it now).
func (s Status) Terminal() bool { return s != StatusPending && s != StatusConfirmed }

// Limits on an order.
const (
	MaxItems    = 50
	MaxQuantity = 1000
	MaxKeyLen   = 255
)

// Order is a customer's order.
type Order struct {
	ID     int64
	UserID int64
	Status Status
	Items  []Item
	// Reason says why an order was rejected or cancelled, or why a
	// cancellation was refused.
	Reason    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Card is the card token the customer pays with; it is kept only in
	// the saga's data, never in the order.
	Card string
	// Steps is the history of the order's sagas, oldest first (from Get).
	Steps []Step
}

// Step is one transition of an order's saga.
type Step struct {
	Saga   string
	Step   string
	Event  string
	Detail string
	At     time.Time
}

// Event is one entry of an order's history: a change of its status, or a
// step of one of its sagas. Seq counts from 1 per order, with no gap.
type Event struct {
	Seq int64
	At  time.Time
	// Kind is EventStatus (Status and Detail, the reason, are set),
	// EventSaga (a saga started, completed or compensated: Saga, Outcome)
	// or EventStep (Saga, Step, Outcome: sent, succeeded, failed,
	// timed_out, undo_sent, undone, undo_failed, aborted,
	// needs_attention; Detail).
	Kind    string
	Status  Status
	Saga    string
	Step    string
	Outcome string
	Detail  string
}

// The kinds of Event.
const (
	EventStatus = "status"
	EventSaga   = "saga"
	EventStep   = "step"
)

// MaxEvents is the most events one read of a history returns.
const MaxEvents = 500

// Item is one line of an order.
type Item struct {
	SKU      string
	Quantity int
}

// User is what order-service needs to know of a user.
type User struct {
	ID       int64
	Username string
}

// Users finds users (user-service). GetUser returns fault.NotFound for an
// unknown user, and fault.Unavailable or fault.Timeout when it cannot tell.
// It acts with the credentials the context carries.
type Users interface {
	GetUser(ctx context.Context, id int64) (User, error)
}

// Store keeps orders. Get of a missing order is fault.NotFound.
type Store interface {
	// Create stores o as a new order, under the idempotency key (userID,
	// key) when key is not empty, and in the same transaction writes the
	// messages events returns for the saved order (with its id) through
	// the outbox and starts its place-order saga. If the key was used
	// before, it stores nothing and returns the order made then and
	// created=false; if that order came from another request (a different
	// hash), it returns fault.Conflict.
	Create(ctx context.Context, o Order, key, requestHash string, events func(Order) ([]*bus.Message, error)) (saved Order, created bool, err error)
	// ByIdempotencyKey returns the order made under (userID, key) and the
	// hash of its request, or fault.NotFound.
	ByIdempotencyKey(ctx context.Context, userID int64, key string) (Order, string, error)
	Get(ctx context.Context, id int64) (Order, error)
	// Status returns only the owner and status of order id (a cheap
	// read).
	Status(ctx context.Context, id int64) (owner int64, st Status, err error)
	// Events returns order id's history after seq after, at most limit
	// events, oldest first.
	Events(ctx context.Context, id, after int64, limit int) ([]Event, error)
	// Sagas lists saga instances (without history); Saga reads one with
	// its history, or fault.NotFound.
	Sagas(ctx context.Context, f saga.Filter) ([]*saga.Instance, error)
	Saga(ctx context.Context, id string) (*saga.Instance, error)
	// List returns up to limit orders of userID with ids below before
	// (every order when before is 0), newest first.
	List(ctx context.Context, userID, before int64, limit int) ([]Order, error)
	// Abort stops the running place-order saga of order id with reason:
	// what was done is undone. A saga that has ended is fault.Conflict.
	Abort(ctx context.Context, id int64, reason string) error
	// StartCancel starts the cancel-order saga of a confirmed order; one
	// already started is fault.Conflict.
	StartCancel(ctx context.Context, o Order) error
}

// Stock tells whether items are in stock now (inventory-service). It
// holds nothing. Its error is a fault (unavailable, timeout) when it
// cannot tell.
type Stock interface {
	Shortages(ctx context.Context, items []Item) ([]Shortage, error)
}

// Shortage is an item that cannot be served now.
type Shortage struct {
	SKU                  string
	Requested, Available int64
	Unknown              bool
}

// FallbackUncheckedStock names the fallback taken when inventory-service
// cannot say whether the items are in stock: the order is accepted
// anyway and the saga's ReserveStock decides.
const FallbackUncheckedStock = "accept-without-stock-check"

// Service is order-service's use cases. It is safe for concurrent use.
type Service struct {
	store   Store
	waiters *Waiters
	users   Users
	stock   Stock
	now     func() time.Time
	// admission, when set, bounds the orders in flight (Admission).
	admission *Admission

	fallbacks atomic.Int64
}

// Admit has Place refuse new orders beyond what a (see Admission).
func (s *Service) Admit(a *Admission) { s.admission = a }

// Admission is what Admit set, nil when every order is taken.
func (s *Service) Admission() *Admission { return s.admission }

// NewService returns the service; stock may be nil (no check). waiters
// are woken by the saga engine (its Config.Ended) when an order's saga
// ends.
func NewService(store Store, waiters *Waiters, users Users, stock Stock, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, waiters: waiters, users: users, stock: stock, now: now}
}

// Fallbacks returns how many orders were accepted without a stock check
// (FallbackUncheckedStock).
func (s *Service) Fallbacks() int64 { return s.fallbacks.Load() }

var skuRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// Placed is the outcome of Place.
type Placed struct {
	Order Order
	// Replayed is true when the idempotency key was used before and Order is
	// the order made then.
	Replayed bool
}

// Place creates an order of items for the caller. With an idempotency key, a
// repeated request returns the first order instead of making another; the
// same key with different items is fault.Conflict. Bad items are
// fault.Invalid; a caller unknown to user-service is fault.Forbidden.
//
// Before it accepts a new order it asks inventory-service whether the
// items are in stock: a shortage is fault.Conflict, an unknown SKU
// fault.Invalid; if inventory-service cannot answer, the order is accepted
// anyway (FallbackUncheckedStock) and the saga decides. card is the card
// token to pay with.
func (s *Service) Place(ctx context.Context, caller auth.Principal, items []Item, key, card string) (Placed, error) {
	if err := validItems(items); err != nil {
		return Placed{}, err
	}
	if len(card) > 64 {
		return Placed{}, fault.New(fault.Invalid, "card is at most 64 characters")
	}
	if err := validKey(key); err != nil {
		return Placed{}, err
	}
	hash := requestHash(items)
	if key != "" {
		prev, prevHash, err := s.store.ByIdempotencyKey(ctx, caller.UserID, key)
		switch {
		case err == nil && prevHash == hash:
			return Placed{Order: prev, Replayed: true}, nil
		case err == nil:
			return Placed{}, fault.New(fault.Conflict, "the Idempotency-Key was used for a different order")
		case !fault.Is(err, fault.NotFound):
			return Placed{}, fmt.Errorf("place order: %w", err)
		}
	}
	if s.admission != nil {
		permit, ok := s.admission.Admit()
		if !ok {
			return Placed{}, fault.New(fault.Unavailable, "the shop has as many orders in progress as it can finish in time; try again in a moment")
		}
		held := false
		defer func() {
			if !held {
				permit.Drop()
			}
		}()
		placed, err := s.place(ctx, caller, items, key, card, hash)
		if err == nil && !placed.Replayed {
			s.admission.Hold(placed.Order.ID, permit)
			held = true
		}
		return placed, err
	}
	return s.place(ctx, caller, items, key, card, hash)
}

// place is Place once the order is admitted.
func (s *Service) place(ctx context.Context, caller auth.Principal, items []Item, key, card, hash string) (Placed, error) {
	if _, err := s.users.GetUser(ctx, caller.UserID); err != nil {
		if fault.Is(err, fault.NotFound) {
			return Placed{}, fault.Wrap(fault.Forbidden, err, "your account cannot place orders")
		}
		return Placed{}, fmt.Errorf("place order: check user: %w", err)
	}
	if err := s.checkStock(ctx, items); err != nil {
		return Placed{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	o := Order{UserID: caller.UserID, Status: StatusPending, Items: items, CreatedAt: now, UpdatedAt: now, Card: card}
	saved, created, err := s.store.Create(ctx, o, key, hash, orderCreated)
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	return Placed{Order: saved, Replayed: !created}, nil
}

func (s *Service) checkStock(ctx context.Context, items []Item) error {
	if s.stock == nil {
		return nil
	}
	short, err := s.stock.Shortages(ctx, items)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("place order: %w", err)
		}
		s.fallbacks.Add(1) // FallbackUncheckedStock
		return nil
	}
	for _, sh := range short {
		if sh.Unknown {
			return fault.New(fault.Invalid, "%s is not sold here", sh.SKU)
		}
	}
	if len(short) > 0 {
		var b strings.Builder
		for i, sh := range short {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %d wanted, %d in stock", sh.SKU, sh.Requested, sh.Available)
		}
		return fault.New(fault.Conflict, "not enough stock: %s", b.String())
	}
	return nil
}

// Cancel cancels the caller's order: a pending one by stopping its saga,
// a confirmed one by a cancel-order saga (refund, restock), unless its
// parcel has left. Either way the undoing happens after Cancel returns;
// the order's status shows the outcome. Any other status is
// fault.Conflict.
func (s *Service) Cancel(ctx context.Context, caller auth.Principal, id int64) (Order, error) {
	o, err := s.Get(ctx, caller, id)
	if err != nil {
		return Order{}, err
	}
	switch o.Status {
	case StatusPending:
		err = s.store.Abort(ctx, id, CancelledByCustomer)
	case StatusConfirmed:
		err = s.store.StartCancel(ctx, o)
	default:
		return Order{}, fault.New(fault.Conflict, "order %d is %s and can no longer be cancelled", id, o.Status)
	}
	if err != nil {
		return Order{}, fmt.Errorf("cancel order: %w", err)
	}
	return s.store.Get(ctx, id)
}

// orderCreated is the event a new order publishes.
func orderCreated(o Order) ([]*bus.Message, error) {
	e := events.OrderCreated{Event: events.TypeOrderCreated, OrderID: o.ID, UserID: o.UserID, CreatedAt: o.CreatedAt}
	for _, it := range o.Items {
		e.Items = append(e.Items, events.Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	m, err := orderMessage(o, events.TypeOrderCreated, "created", o.CreatedAt, e)
	if err != nil {
		return nil, err
	}
	return []*bus.Message{m}, nil
}

// orderMessage is an event of order o: its id names the order and what
// happened (so a repeat is the same message), its key and correlation id
// are the order's.
func orderMessage(o Order, typ, what string, at time.Time, body any) (*bus.Message, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	id := strconv.FormatInt(o.ID, 10)
	return &bus.Message{
		ID: "order-" + id + "-" + what, Type: typ, Source: events.SourceOrderService,
		Time: at, Key: id, CorrelationID: id, Body: b,
	}, nil
}

// HistoryEntries are evs as the history topic and API carry them.
func HistoryEntries(evs []Event) []events.HistoryEntry {
	out := make([]events.HistoryEntry, len(evs))
	for i, ev := range evs {
		out[i] = events.HistoryEntry{Seq: ev.Seq, At: ev.At.UTC(), Kind: ev.Kind, Status: string(ev.Status), Saga: ev.Saga, Step: ev.Step, Outcome: ev.Outcome, Detail: ev.Detail}
	}
	return out
}

// HistoryMessage is the OrderHistory message of evs, entries of order
// id's (of user's) history just written; its id names the first seq, so a
// transaction retried writes the same message.
func HistoryMessage(id, user int64, evs []Event) (*bus.Message, error) {
	if len(evs) == 0 {
		return nil, errors.New("an order history message needs an entry")
	}
	h := events.OrderHistory{OrderID: id, UserID: user, Events: HistoryEntries(evs)}
	return orderMessage(Order{ID: id}, events.TypeOrderHistory, "history-"+strconv.FormatInt(evs[0].Seq, 10), evs[0].At, h)
}

// Get returns order id if caller may see it: its owner or an administrator.
// Anyone else gets fault.NotFound, as if it did not exist.
func (s *Service) Get(ctx context.Context, caller auth.Principal, id int64) (Order, error) {
	if err := validID(id); err != nil {
		return Order{}, err
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if err := visible(caller, id, o.UserID); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Events returns order id's history after seq after (0: from the
// start), at most limit (1 to MaxEvents) entries, oldest first, if caller
// may see the order.
func (s *Service) Events(ctx context.Context, caller auth.Principal, id, after int64, limit int) ([]Event, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	if after < 0 || limit < 1 || limit > MaxEvents {
		return nil, fault.New(fault.Invalid, "after is a seq (0 or more) and limit 1 to %d", MaxEvents)
	}
	owner, _, err := s.store.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := visible(caller, id, owner); err != nil {
		return nil, err
	}
	return s.store.Events(ctx, id, after, limit)
}

func validID(id int64) error {
	if id < 1 {
		return fault.New(fault.Invalid, "order id must be a positive integer")
	}
	return nil
}

// visible is nil when caller may read order id of owner; for anyone else
// the order does not exist (its existence is not revealed).
func visible(caller auth.Principal, id, owner int64) error {
	if owner != caller.UserID && !caller.IsAdmin() {
		return fault.New(fault.NotFound, "no order %d", id)
	}
	return nil
}

// MaxWait is the longest Settled waits.
const MaxWait = 30 * time.Second

// Settled returns order id as Get does, after waiting up to wait (at most
// MaxWait) while it is pending: a client learns the saga's verdict in one
// call instead of polling. The wait ends early with ctx.
func (s *Service) Settled(ctx context.Context, caller auth.Principal, id int64, wait time.Duration) (Order, error) {
	if wait <= 0 {
		return s.Get(ctx, caller, id)
	}
	// A pending order is read whole only once it settles: the owner and
	// status are enough to start waiting, and the whole order (its saga
	// history included) is the costly read.
	if err := validID(id); err != nil {
		return Order{}, err
	}
	owner, st, err := s.store.Status(ctx, id)
	if err == nil {
		err = visible(caller, id, owner)
	}
	if err != nil {
		return Order{}, err
	}
	if st != StatusPending {
		return s.store.Get(ctx, id)
	}
	// Woken by this process's saga engine; a replica's is seen by a poll
	// that backs off (100 ms doubling to 1 s), so that waiters queued
	// behind a busy system do not add to its load (docs/benchmarks.md).
	changed, cancel := s.waiters.Wait(id)
	defer cancel()
	deadline := time.NewTimer(min(wait, MaxWait))
	defer deadline.Stop()
	every := 100 * time.Millisecond
	poll := time.NewTimer(every)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.store.Get(context.WithoutCancel(ctx), id)
		case <-deadline.C:
			return s.store.Get(ctx, id)
		case <-changed:
			changed = nil
		case <-poll.C:
			every = min(2*every, time.Second)
			poll.Reset(every)
		}
		_, st, err := s.store.Status(ctx, id)
		if err != nil {
			return Order{}, err
		}
		if st != StatusPending {
			return s.store.Get(ctx, id)
		}
	}
}

// Sagas lists the saga instances of every order, newest first (by
// creation, so order 10's saga comes before order 9's), for administrators
// (anyone else is fault.Forbidden). status, when set, is one of the saga
// statuses; before is the cursor of the previous page (saga.Cursor of its
// last instance; anything else is fault.Invalid).
func (s *Service) Sagas(ctx context.Context, caller auth.Principal, status, before string, limit int) ([]*saga.Instance, error) {
	if !caller.IsAdmin() {
		return nil, fault.New(fault.Forbidden, "sagas are for administrators")
	}
	if limit < 1 || limit > 100 {
		return nil, fault.New(fault.Invalid, "limit must be between 1 and 100")
	}
	switch saga.Status(status) {
	case "", saga.Running, saga.Compensating, saga.Completed, saga.Compensated, saga.NeedsAttention:
	default:
		return nil, fault.New(fault.Invalid, "status is one of running, compensating, completed, compensated, needs_attention")
	}
	ins, err := s.store.Sagas(ctx, saga.Filter{Status: saga.Status(status), Before: before, Limit: limit})
	if errors.Is(err, saga.ErrBadCursor) {
		return nil, fault.New(fault.Invalid, "cursor %q is not one this list gave", before)
	}
	return ins, err
}

// Saga returns one saga instance with its history, for administrators.
func (s *Service) Saga(ctx context.Context, caller auth.Principal, id string) (*saga.Instance, error) {
	if !caller.IsAdmin() {
		return nil, fault.New(fault.Forbidden, "sagas are for administrators")
	}
	return s.store.Saga(ctx, id)
}

// Page is one page of a listing.
type Page struct {
	Orders []Order
	// Next is the cursor of the next page, or "" on the last.
	Next string
}

// List returns the caller's own orders, newest first, limit (1 to 100) at a
// time, from the cursor of the previous page ("" for the first).
func (s *Service) List(ctx context.Context, caller auth.Principal, cursor string, limit int) (Page, error) {
	if limit < 1 || limit > 100 {
		return Page{}, fault.New(fault.Invalid, "limit must be between 1 and 100")
	}
	var before int64
	if cursor != "" {
		var err error
		before, err = strconv.ParseInt(cursor, 10, 64)
		if err != nil || before < 1 {
			return Page{}, fault.New(fault.Invalid, "cursor is not one this API returned")
		}
	}
	os, err := s.store.List(ctx, caller.UserID, before, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("list orders: %w", err)
	}
	p := Page{Orders: os}
	if len(os) > limit {
		p.Orders = os[:limit]
		p.Next = strconv.FormatInt(os[limit-1].ID, 10)
	}
	return p, nil
}

func validItems(items []Item) error {
	if len(items) == 0 {
		return fault.New(fault.Invalid, "an order needs at least one item")
	}
	if len(items) > MaxItems {
		return fault.New(fault.Invalid, "an order has at most %d items", MaxItems)
	}
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		if !skuRE.MatchString(it.SKU) {
			return fault.New(fault.Invalid, "items[%d].sku must be 1 to 64 upper-case letters, digits or '-'", i)
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return fault.New(fault.Invalid, "items[%d].quantity must be between 1 and %d", i, MaxQuantity)
		}
		if seen[it.SKU] {
			return fault.New(fault.Invalid, "items[%d].sku %s appears twice; add the quantities", i, it.SKU)
		}
		seen[it.SKU] = true
	}
	return nil
}

func validKey(key string) error {
	if len(key) > MaxKeyLen {
		return fault.New(fault.Invalid, "Idempotency-Key is at most %d characters", MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return fault.New(fault.Invalid, "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// requestHash identifies what was asked for, so a reused idempotency key
// can be told apart from a retry.
func requestHash(items []Item) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s\x00%d\x00", it.SKU, it.Quantity)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
