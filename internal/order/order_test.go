package order_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/ordertest"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// users is a hand-written fake of user-service.
type users struct {
	known map[int64]bool
	err   error
	calls int
	mu    sync.Mutex
}

func (u *users) GetUser(_ context.Context, id int64) (order.User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	if u.err != nil {
		return order.User{}, u.err
	}
	if !u.known[id] {
		return order.User{}, fault.New(fault.NotFound, "no user %d", id)
	}
	return order.User{ID: id}, nil
}

var (
	alice = auth.Principal{UserID: 1, Username: "alice", Role: auth.RoleCustomer}
	bob   = auth.Principal{UserID: 2, Username: "bob", Role: auth.RoleCustomer}
	admin = auth.Principal{UserID: 3, Username: "admin", Role: auth.RoleAdmin}
	clock = func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }
)

// newService returns the service over a real SQLite store in a temporary
// folder.
func newService(t *testing.T) (*order.Service, *users) {
	svc, u, _ := newServiceDB(t)
	return svc, u
}

func newServiceDB(t *testing.T) (*order.Service, *users, *sqldb.DB) {
	t.Helper()
	return newServiceWith(t, nil)
}

// newServiceWith returns the service over a real SQLite store, with stock
// as its availability check (nil for none).
func newServiceWith(t *testing.T, stock order.Stock) (*order.Service, *users, *sqldb.DB) {
	t.Helper()
	db := sqldbtest.SQLite(t)
	u := &users{known: map[int64]bool{1: true, 2: true, 3: true}}
	return ordertest.New(t, db, u, stock, clock).Service, u, db
}

// TestPlaceWritesOrderCreatedToTheOutbox: the event is written with the
// order, once per order (not again on an idempotent replay), in the
// tutorial's shape.
func TestPlaceWritesOrderCreatedToTheOutbox(t *testing.T) {
	svc, _, db := newServiceDB(t)
	ctx := context.Background()
	p, err := svc.Place(ctx, alice, mug, "k", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Place(ctx, alice, mug, "k", ""); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT topic, headers, body FROM outbox WHERE topic = 'orders'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var topic, headers string
		var body []byte
		if err := rows.Scan(&topic, &headers, &body); err != nil {
			t.Fatal(err)
		}
		var h map[string]string
		var e map[string]any
		_ = json.Unmarshal([]byte(headers), &h)
		_ = json.Unmarshal(body, &e)
		if topic != "orders" || h["ce-type"] != "OrderCreated" || h["ce-partitionkey"] != fmt.Sprint(p.Order.ID) {
			t.Errorf("outbox row: topic %q headers %v", topic, h)
		}
		if e["event"] != "OrderCreated" || e["orderId"] != float64(p.Order.ID) || e["userId"] != float64(alice.UserID) {
			t.Errorf("OrderCreated body = %s", body)
		}
	}
	if n != 1 {
		t.Errorf("outbox rows = %d, want 1 (one order, one event)", n)
	}
}

var mug = []order.Item{{SKU: "JX-MUG", Quantity: 2}}

func TestPlaceAndGet(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	placed, err := svc.Place(ctx, alice, mug, "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := order.Order{ID: placed.Order.ID, UserID: 1, Status: order.StatusPending, Items: mug, CreatedAt: clock(), UpdatedAt: clock()}
	got, err := svc.Get(ctx, alice, placed.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(order.Order{}, "Steps")); diff != "" {
		t.Errorf("Get after Place (-want +got):\n%s", diff)
	}
	if len(got.Steps) != 2 || got.Steps[1].Step != "reserve-stock" {
		t.Errorf("Get after Place: steps %+v, want the saga started and its first command sent", got.Steps)
	}
	if _, err := svc.Get(ctx, bob, placed.Order.ID); !fault.Is(err, fault.NotFound) {
		t.Errorf("Get of alice's order as bob = %v, want not found", err)
	}
	if _, err := svc.Get(ctx, admin, placed.Order.ID); err != nil {
		t.Errorf("Get of alice's order as admin = %v, want it", err)
	}
	if _, err := svc.Get(ctx, alice, 999); !fault.Is(err, fault.NotFound) {
		t.Errorf("Get of a missing order = %v, want not found", err)
	}
}

func TestPlaceIsIdempotentPerKeyAndUser(t *testing.T) {
	svc, u := newService(t)
	ctx := context.Background()
	first, err := svc.Place(ctx, alice, mug, "key-1", "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := svc.Place(ctx, alice, mug, "key-1", "")
	if err != nil || !again.Replayed || again.Order.ID != first.Order.ID {
		t.Errorf("Place again with the key = %+v, %v; want the first order replayed", again, err)
	}
	if u.calls != 1 {
		t.Errorf("user-service calls = %d, want 1 (a replay asks no one)", u.calls)
	}
	if _, err := svc.Place(ctx, alice, []order.Item{{SKU: "JX-MUG", Quantity: 3}}, "key-1", ""); !fault.Is(err, fault.Conflict) {
		t.Errorf("Place with the key and other items = %v, want conflict", err)
	}
	other, err := svc.Place(ctx, bob, mug, "key-1", "")
	if err != nil || other.Replayed || other.Order.ID == first.Order.ID {
		t.Errorf("Place by bob with alice's key = %+v, %v; want a new order (keys are per user)", other, err)
	}
}

// TestPlaceConcurrentRetriesMakeOneOrder: many copies of one request at once
// (a client retrying on a timeout) make exactly one order.
func TestPlaceConcurrentRetriesMakeOneOrder(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan int64, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := svc.Place(ctx, alice, mug, "same", "")
			if err != nil {
				t.Error(err)
				return
			}
			ids <- p.Order.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		seen[id] = true
	}
	page, err := svc.List(ctx, alice, "", 100)
	if len(seen) != 1 || err != nil || len(page.Orders) != 1 {
		t.Errorf("20 concurrent identical requests made orders %v (list %d, %v), want one", seen, len(page.Orders), err)
	}
}

func TestPlaceRejectsBadInput(t *testing.T) {
	svc, _ := newService(t)
	many := make([]order.Item, order.MaxItems+1)
	for i := range many {
		many[i] = order.Item{SKU: fmt.Sprintf("SKU-%d", i), Quantity: 1}
	}
	tests := []struct {
		name  string
		items []order.Item
		key   string
	}{
		{"no items", nil, ""},
		{"zero quantity", []order.Item{{SKU: "JX-MUG", Quantity: 0}}, ""},
		{"negative quantity", []order.Item{{SKU: "JX-MUG", Quantity: -1}}, ""},
		{"huge quantity", []order.Item{{SKU: "JX-MUG", Quantity: order.MaxQuantity + 1}}, ""},
		{"empty sku", []order.Item{{SKU: "", Quantity: 1}}, ""},
		{"lower-case sku", []order.Item{{SKU: "jx-mug", Quantity: 1}}, ""},
		{"sku twice", []order.Item{{SKU: "JX-MUG", Quantity: 1}, {SKU: "JX-MUG", Quantity: 1}}, ""},
		{"too many items", many, ""},
		{"key with a space", mug, "a b"},
		{"key too long", mug, strings.Repeat("k", order.MaxKeyLen+1)},
	}
	for _, tt := range tests {
		if _, err := svc.Place(context.Background(), alice, tt.items, tt.key, ""); !fault.Is(err, fault.Invalid) {
			t.Errorf("%s: Place = %v, want invalid", tt.name, err)
		}
	}
}

func TestPlaceWhenUserServiceFails(t *testing.T) {
	svc, u := newService(t)
	ctx := context.Background()
	u.known = map[int64]bool{}
	if _, err := svc.Place(ctx, alice, mug, "", ""); !fault.Is(err, fault.Forbidden) {
		t.Errorf("Place by a user unknown to user-service = %v, want forbidden", err)
	}
	u.err = fault.Wrap(fault.Unavailable, errors.New("connection refused"), "user-service is unavailable")
	if _, err := svc.Place(ctx, alice, mug, "k", ""); !fault.Is(err, fault.Unavailable) {
		t.Errorf("Place with user-service down = %v, want unavailable", err)
	}
	if page, _ := svc.List(ctx, alice, "", 10); len(page.Orders) != 0 {
		t.Errorf("orders after failed placements = %d, want 0", len(page.Orders))
	}
}

func TestListPaginates(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	var ids []int64
	for range 5 {
		p, err := svc.Place(ctx, alice, mug, "", "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.Order.ID)
	}
	if _, err := svc.Place(ctx, bob, mug, "", ""); err != nil {
		t.Fatal(err)
	}
	var got []int64
	cursor := ""
	for pages := 0; ; pages++ {
		page, err := svc.List(ctx, alice, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Orders {
			got = append(got, o.ID)
		}
		if page.Next == "" {
			if pages != 2 {
				t.Errorf("pages = %d, want 3", pages+1)
			}
			break
		}
		cursor = page.Next
	}
	want := []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if !cmp.Equal(got, want) {
		t.Errorf("listed ids = %v, want %v (alice's only, newest first)", got, want)
	}
	for _, bad := range []struct {
		cursor string
		limit  int
	}{{"x", 10}, {"-1", 10}, {"", 0}, {"", 101}} {
		if _, err := svc.List(ctx, alice, bad.cursor, bad.limit); !fault.Is(err, fault.Invalid) {
			t.Errorf("List(%q, %d) = %v, want invalid", bad.cursor, bad.limit, err)
		}
	}
}

// stock is a hand-written fake of inventory-service's availability check.
type stock struct {
	short []order.Shortage
	err   error
}

func (s *stock) Shortages(context.Context, []order.Item) ([]order.Shortage, error) {
	return s.short, s.err
}

func TestTheStockCheckRefusesShortagesAndFallsBackWhenInventoryIsDown(t *testing.T) {
	ctx := context.Background()
	s := &stock{}
	svc, _, _ := newServiceWith(t, s)
	mug := []order.Item{{SKU: "JX-MUG", Quantity: 2}}

	s.short = []order.Shortage{{SKU: "JX-MUG", Requested: 2, Available: 1}}
	if _, err := svc.Place(ctx, alice, mug, "", ""); !fault.Is(err, fault.Conflict) || !strings.Contains(err.Error(), "JX-MUG: 2 wanted, 1 in stock") {
		t.Errorf("Place with a shortage = %v, want a conflict naming the SKU", err)
	}
	s.short = []order.Shortage{{SKU: "JX-MUG", Requested: 2, Unknown: true}}
	if _, err := svc.Place(ctx, alice, mug, "", ""); !fault.Is(err, fault.Invalid) {
		t.Errorf("Place of an unknown SKU = %v, want invalid", err)
	}
	s.short, s.err = nil, fault.New(fault.Unavailable, "inventory-service is down")
	p, err := svc.Place(ctx, alice, mug, "", "")
	if err != nil || p.Order.Status != order.StatusPending {
		t.Fatalf("Place with inventory down = %+v, %v; want a pending order (the saga decides)", p.Order, err)
	}
	if got := svc.Fallbacks(); got != 1 {
		t.Errorf("Fallbacks() = %d, want 1", got)
	}
	got, err := svc.Get(ctx, alice, p.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) < 2 || got.Steps[0].Event != "started" || got.Steps[1].Step != "reserve-stock" || got.Steps[1].Event != "sent" {
		t.Errorf("steps of a new order = %+v, want the saga started and reserve-stock sent", got.Steps)
	}
}

func TestSagasAreListedAndReadByAdministratorsOnly(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	p, err := svc.Place(ctx, alice, mug, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Sagas(ctx, alice, "", "", 10); !fault.Is(err, fault.Forbidden) {
		t.Errorf("Sagas as a customer = %v, want forbidden", err)
	}
	if _, err := svc.Sagas(ctx, admin, "stuck", "", 10); !fault.Is(err, fault.Invalid) {
		t.Errorf("Sagas with an unknown status = %v, want invalid", err)
	}
	ins, err := svc.Sagas(ctx, admin, "running", "", 10)
	if err != nil || len(ins) != 1 || ins[0].Saga != order.SagaPlaceOrder {
		t.Fatalf("Sagas(running) = %v, %v; want the new order's place-order saga", ins, err)
	}
	in, err := svc.Saga(ctx, admin, ins[0].ID)
	if err != nil || len(in.History) != 2 || in.ID != fmt.Sprint(p.Order.ID) {
		t.Errorf("Saga(%s) = %+v, %v; want its two events", ins[0].ID, in, err)
	}
	if _, err := svc.Saga(ctx, admin, "nope"); !fault.Is(err, fault.NotFound) {
		t.Errorf("Saga(nope) = %v, want not found", err)
	}
}

// TestSettledChecksTheCallerBeforeWaiting: the long poll answers another
// customer's order as missing without waiting, and the order it returns
// after waiting is the whole order (items, saga steps), as Get's.
func TestSettledChecksTheCallerBeforeWaiting(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	placed, err := svc.Place(ctx, alice, mug, "", "")
	if err != nil {
		t.Fatal(err)
	}
	id := placed.Order.ID
	for _, tc := range []struct {
		name   string
		caller auth.Principal
		id     int64
		want   fault.Kind
	}{
		{"another customer's order", bob, id, fault.NotFound},
		{"a missing order", alice, 999, fault.NotFound},
		{"a bad id", alice, 0, fault.Invalid},
	} {
		if _, err := svc.Settled(ctx, tc.caller, tc.id, 5*time.Second); !fault.Is(err, tc.want) {
			t.Errorf("Settled(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	whole, err := svc.Get(ctx, alice, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, caller := range []auth.Principal{alice, admin} {
		got, err := svc.Settled(ctx, caller, id, 20*time.Millisecond) // no engine runs: still pending
		if err != nil {
			t.Fatalf("Settled as %s: %v", caller.Username, err)
		}
		if diff := cmp.Diff(whole, got); diff != "" {
			t.Errorf("Settled as %s, still pending (-Get +Settled):\n%s", caller.Username, diff)
		}
	}
}
