// Package order is order-service's domain: orders, who may see them, and
// placing one exactly once per idempotency key.
package order

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
)

// Status is where an order is in its life.
type Status string

// Statuses.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusRejected  Status = "rejected"
	StatusCancelled Status = "cancelled"
)

// Limits on an order.
const (
	MaxItems    = 50
	MaxQuantity = 1000
	MaxKeyLen   = 255
)

// Order is a customer's order.
type Order struct {
	ID        int64
	UserID    int64
	Status    Status
	Items     []Item
	CreatedAt time.Time
	UpdatedAt time.Time
}

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
	// Create stores o as a new order under the idempotency key (userID, key)
	// when key is not empty. If the key was used before, it stores nothing
	// and returns the order made then and created=false; if that order came
	// from another request (a different hash), it returns fault.Conflict.
	// The messages events returns for the saved order (with its id) are
	// written in the same transaction, through the outbox.
	Create(ctx context.Context, o Order, key, requestHash string, events func(Order) ([]*bus.Message, error)) (saved Order, created bool, err error)
	// ByIdempotencyKey returns the order made under (userID, key) and the
	// hash of its request, or fault.NotFound.
	ByIdempotencyKey(ctx context.Context, userID int64, key string) (Order, string, error)
	Get(ctx context.Context, id int64) (Order, error)
	// List returns up to limit orders of userID with ids below before
	// (every order when before is 0), newest first.
	List(ctx context.Context, userID, before int64, limit int) ([]Order, error)
}

// Service is order-service's use cases. It is safe for concurrent use.
type Service struct {
	store Store
	users Users
	now   func() time.Time
}

// NewService returns the service.
func NewService(store Store, users Users, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, users: users, now: now}
}

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
func (s *Service) Place(ctx context.Context, caller auth.Principal, items []Item, key string) (Placed, error) {
	if err := validItems(items); err != nil {
		return Placed{}, err
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
	if _, err := s.users.GetUser(ctx, caller.UserID); err != nil {
		if fault.Is(err, fault.NotFound) {
			return Placed{}, fault.Wrap(fault.Forbidden, err, "your account cannot place orders")
		}
		return Placed{}, fmt.Errorf("place order: check user: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	o := Order{UserID: caller.UserID, Status: StatusPending, Items: items, CreatedAt: now, UpdatedAt: now}
	saved, created, err := s.store.Create(ctx, o, key, hash, orderCreated)
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	return Placed{Order: saved, Replayed: !created}, nil
}

// orderCreated is the event a new order publishes.
func orderCreated(o Order) ([]*bus.Message, error) {
	e := events.OrderCreated{Event: events.TypeOrderCreated, OrderID: o.ID, UserID: o.UserID, CreatedAt: o.CreatedAt}
	for _, it := range o.Items {
		e.Items = append(e.Items, events.Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	id := strconv.FormatInt(o.ID, 10)
	return []*bus.Message{{
		ID:            "order-" + id + "-created",
		Type:          events.TypeOrderCreated,
		Source:        events.SourceOrderService,
		Time:          o.CreatedAt,
		Key:           id,
		CorrelationID: id,
		Body:          body,
	}}, nil
}

// Get returns order id if caller may see it: its owner or an administrator.
// Anyone else gets fault.NotFound, as if it did not exist.
func (s *Service) Get(ctx context.Context, caller auth.Principal, id int64) (Order, error) {
	if id < 1 {
		return Order{}, fault.New(fault.Invalid, "order id must be a positive integer")
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if o.UserID != caller.UserID && !caller.IsAdmin() {
		return Order{}, fault.New(fault.NotFound, "no order %d", id)
	}
	return o, nil
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
