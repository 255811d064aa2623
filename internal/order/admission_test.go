package order_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/ordertest"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

func placeSaga(id int64) *saga.Instance {
	return &saga.Instance{Saga: order.SagaPlaceOrder, ID: fmt.Sprint(id), Data: json.RawMessage(fmt.Sprintf(`{"orderId":%d}`, id))}
}

// fill admits orders 1, 2, ... until the admission refuses one, and
// returns how many it took.
func fill(t *testing.T, a *order.Admission) int64 {
	t.Helper()
	var n int64
	for {
		p, ok := a.Admit()
		if !ok {
			return n
		}
		n++
		a.Hold(n, p)
		if n > 100000 {
			t.Fatal("the admission never refused")
		}
	}
}

// TestAdmissionRefusesBeyondItsLimit: orders are admitted up to the limit
// and refused beyond it, counted; a saga's end makes room for one more,
// and the end of another saga (cancel-order) makes none.
func TestAdmissionRefusesBeyondItsLimit(t *testing.T) {
	a := order.NewAdmission()
	n := fill(t, a)
	st := a.Stats()
	if n != int64(st.Limit) || st.InFlight != st.Limit || st.Refused != 1 {
		t.Fatalf("admitted %d; stats %+v, want the limit in flight and one refused", n, st)
	}
	a.Ended(&saga.Instance{Saga: order.SagaCancelOrder, ID: "1-cancel", Data: json.RawMessage(`{"orderId":1}`)})
	if _, ok := a.Admit(); ok {
		t.Fatal("a cancellation's end made room")
	}
	a.Ended(placeSaga(1))
	p, ok := a.Admit()
	if !ok {
		t.Fatal("no room after an order's saga ended")
	}
	p.Drop()
	if a.Stats().Refused != 2 {
		t.Errorf("refused %d, want 2", a.Stats().Refused)
	}
}

// TestAdmissionSagaEndsFirst: a saga that ends before its order's permit
// is held (it can: Place returns after the saga began) still gives it
// back.
func TestAdmissionSagaEndsFirst(t *testing.T) {
	a := order.NewAdmission()
	p, _ := a.Admit()
	a.Ended(placeSaga(9))
	a.Hold(9, p)
	if n := a.Stats().InFlight; n != 0 {
		t.Errorf("%d in flight, want 0", n)
	}
}

// TestAdmissionSweep: a permit whose saga ended elsewhere is given back
// once the store says so; one whose end is never seen is given back after
// the longest hold, unmeasured.
func TestAdmissionSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := order.NewAdmission()
		for id := int64(1); id <= 2; id++ {
			p, _ := a.Admit()
			a.Hold(id, p)
		}
		settled := func(_ context.Context, ids []int64) map[int64]bool {
			return map[int64]bool{1: slices.Contains(ids, 1)}
		}
		a.Sweep(context.Background(), settled)
		if n := a.Stats().InFlight; n != 2 {
			t.Fatalf("%d in flight right after admission, want 2 (a second's grace)", n)
		}
		time.Sleep(2 * time.Second)
		a.Sweep(context.Background(), settled)
		if n := a.Stats().InFlight; n != 1 {
			t.Fatalf("%d in flight after order 1 settled elsewhere, want 1", n)
		}
		time.Sleep(2 * time.Minute)
		a.Sweep(context.Background(), settled)
		if n := a.Stats().InFlight; n != 0 {
			t.Fatalf("%d in flight after the longest hold, want 0", n)
		}
	})
}

// TestPlaceWhenTheShopIsFull: with as many orders in flight as the
// admission allows, a new order is refused as unavailable and nothing is
// written; the replay of an order already placed is still answered, and a
// refused caller's mistake (an unknown user) holds no permit.
func TestPlaceWhenTheShopIsFull(t *testing.T) {
	db := sqldbtest.SQLite(t)
	u := &users{known: map[int64]bool{1: true, 2: true}}
	parts := ordertest.New(t, db, u, nil, clock)
	svc, a := parts.Service, parts.Admission
	ctx := context.Background()

	if _, err := svc.Place(ctx, auth.Principal{UserID: 99, Username: "mallory", Role: auth.RoleCustomer}, mug, "", ""); !fault.Is(err, fault.Forbidden) {
		t.Fatalf("unknown user's order = %v, want forbidden", err)
	}
	if n := a.Stats().InFlight; n != 0 {
		t.Fatalf("%d in flight after a refused caller, want 0", n)
	}
	first, err := svc.Place(ctx, alice, mug, "first", "")
	if err != nil {
		t.Fatal(err)
	}
	for a.Stats().InFlight < a.Stats().Limit {
		if _, err := svc.Place(ctx, bob, mug, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	var before int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Place(ctx, alice, mug, "", ""); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("an order beyond the limit = %v, want unavailable", err)
	}
	var after int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("orders %d before a refusal, %d after", before, after)
	}
	again, err := svc.Place(ctx, alice, mug, "first", "")
	if err != nil || !again.Replayed || again.Order.ID != first.Order.ID {
		t.Errorf("replay while full = %+v, %v; want order %d again", again, err, first.Order.ID)
	}
}
