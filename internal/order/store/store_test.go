package store_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/ordertest"
	"github.com/junction-go/junction/internal/order/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

func newStore(t *testing.T, db *sqldb.DB) *store.Store {
	t.Helper()
	return ordertest.New(t, db, nil, nil, nil).Store
}

func pending(user int64, skus ...string) order.Order {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	o := order.Order{UserID: user, Status: order.StatusPending, CreatedAt: now, UpdatedAt: now}
	for _, s := range skus {
		o.Items = append(o.Items, order.Item{SKU: s, Quantity: 1})
	}
	return o
}

func created(o order.Order) ([]*bus.Message, error) {
	return []*bus.Message{{ID: fmt.Sprintf("created-%d", o.ID), Type: "OrderCreated", Source: "test", Key: "k"}}, nil
}

// TestCreateIsIdempotentByKey: an order made under a key is made once; the
// same key with the same request gives it back (created false, nothing
// written again), with another request it is a conflict; without a key
// every create makes an order.
func TestCreateIsIdempotentByKey(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		first, made, err := st.Create(ctx, pending(1, "JX-MUG"), "key-1", "hash-a", created)
		if err != nil || !made || first.ID == 0 {
			t.Fatalf("Create = %+v %v %v, want a new order", first, made, err)
		}
		backlog := func() int64 {
			b, err := st.Outbox().Backlog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return b.Unsent
		}
		after := backlog() // its event and its saga's first command
		again, made, err := st.Create(ctx, pending(1, "JX-MUG"), "key-1", "hash-a", created)
		if err != nil || made || again.ID != first.ID {
			t.Errorf("Create again with the key = %+v %v %v, want order %d back", again, made, err, first.ID)
		}
		if n := backlog(); n != after {
			t.Errorf("a replay wrote %d more messages", n-after)
		}
		if _, _, err := st.Create(ctx, pending(1, "JX-TEE-M"), "key-1", "hash-b", created); !fault.Is(err, fault.Conflict) {
			t.Errorf("Create with the key and another request = %v, want a conflict", err)
		}
		if o, made, err := st.Create(ctx, pending(2, "JX-MUG"), "key-1", "hash-b", created); err != nil || !made || o.ID == first.ID {
			t.Errorf("another user's key-1 = %+v %v %v, want an order of its own", o, made, err)
		}
		if o, made, err := st.Create(ctx, pending(1, "JX-MUG"), "", "", created); err != nil || !made || o.ID == first.ID {
			t.Errorf("Create without a key = %+v %v %v, want a new order", o, made, err)
		}
	})
}

// TestReads: the owner and status of an order, the order with its items
// and its saga's history, a customer's orders newest first in pages.
func TestReads(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		var ids []int64
		for range 5 {
			o, _, err := st.Create(ctx, pending(1, "JX-MUG", "JX-PIN"), "", "", created)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, o.ID)
		}
		owner, status, err := st.Status(ctx, ids[0])
		if err != nil || owner != 1 || status != order.StatusPending {
			t.Errorf("Status = %d %s %v, want user 1, pending", owner, status, err)
		}
		if _, _, err := st.Status(ctx, 999); !fault.Is(err, fault.NotFound) {
			t.Errorf("Status of no order = %v, want not found", err)
		}
		o, err := st.Get(ctx, ids[0])
		if err != nil || len(o.Items) != 2 || len(o.Steps) == 0 || o.Steps[0].Event != "started" {
			t.Errorf("Get = %+v %v, want its two items and its saga's history", o, err)
		}
		var got []int64
		for before := int64(0); ; {
			page, err := st.List(ctx, 1, before, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page {
				got = append(got, o.ID)
			}
			if len(page) < 2 {
				break
			}
			before = page[len(page)-1].ID
		}
		want := slices.Clone(ids)
		slices.Reverse(want)
		if !slices.Equal(got, want) {
			t.Errorf("pages of List = %v, want %v (newest first, each once)", got, want)
		}
		if page, err := st.List(ctx, 2, 0, 10); err != nil || len(page) != 0 {
			t.Errorf("another user's List = %v %v, want none", page, err)
		}
	})
}

// TestSagaControls: a cancel saga starts once; aborting an order with no
// saga is not found.
func TestSagaControls(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		o, _, err := st.Create(ctx, pending(1, "JX-MUG"), "", "", created)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.StartCancel(ctx, o); err != nil {
			t.Fatal(err)
		}
		if err := st.StartCancel(ctx, o); !fault.Is(err, fault.Conflict) {
			t.Errorf("a second cancel = %v, want a conflict", err)
		}
		if err := st.Abort(ctx, 999, "gone"); !fault.Is(err, fault.NotFound) {
			t.Errorf("Abort of no order = %v, want not found", err)
		}
		if err := st.Abort(ctx, o.ID, "customer changed their mind"); err != nil {
			t.Errorf("Abort of a running saga = %v", err)
		}
	})
}

// TestSettled: of the ids asked, the orders with their verdict; a pending
// order and one that does not exist are not.
func TestSettled(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		var ids []int64 // a pending order, one with its verdict, none
		for range 2 {
			o, _, err := st.Create(ctx, pending(1, "JX-MUG"), "", "", created)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, o.ID)
		}
		if _, err := db.ExecContext(ctx, db.Dialect.Rebind(`UPDATE orders SET status = ? WHERE id = ?`), string(order.StatusRejected), ids[1]); err != nil {
			t.Fatal(err)
		}
		got, err := st.Settled(ctx, append(ids, 999))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int64]bool{ids[1]: true}; !maps.Equal(got, want) {
			t.Errorf("Settled = %v, want %v", got, want)
		}
	})
}
