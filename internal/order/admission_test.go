package order_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/junction-go/junction/api/services"
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

// fifoShop is a model shop for the admission: it ends at most one order
// every 10 ms, in the order admitted, none sooner than least after its
// admission, and perInFlight later for each order in flight when it was
// admitted (a shop whose cores the orders share); took are the times of
// the orders it ended.
type fifoShop struct {
	a           *order.Admission
	least       time.Duration
	perInFlight time.Duration
	fifo        []queued
	id          int64
	took        []time.Duration
}

type queued struct {
	id    int64
	at    time.Time
	least time.Duration
}

// tick admits n orders, ends the first queued one if it has had its
// time, lets 10 ms pass and returns how many it refused.
func (s *fifoShop) tick(n int) (refused int) {
	for range n {
		if !s.offer() {
			refused++
		}
	}
	if len(s.fifo) > 0 && time.Since(s.fifo[0].at) >= s.fifo[0].least {
		s.took = append(s.took, time.Since(s.fifo[0].at))
		s.a.Ended(placeSaga(s.fifo[0].id))
		s.fifo = s.fifo[1:]
	}
	time.Sleep(10 * time.Millisecond)
	return refused
}

// offer admits one order, or tells it was refused.
func (s *fifoShop) offer() bool {
	p, ok := s.a.Admit()
	if !ok {
		return false
	}
	s.id++
	s.a.Hold(s.id, p)
	s.fifo = append(s.fifo, queued{s.id, time.Now(), s.least + time.Duration(len(s.fifo))*s.perInFlight})
	return true
}

// mean is the orders' mean time in took.
func (s *fifoShop) mean() time.Duration {
	var sum time.Duration
	for _, d := range s.took {
		sum += d
	}
	return sum / time.Duration(len(s.took))
}

// TestAdmissionTimeBound: a shop that finishes an order every 10 ms, each
// at least 50 ms after its admission. Calm at 100 orders a second, it
// refuses none and sets no bound; offered ten times that, it refuses the
// excess and the orders it admits take about three times their calm time
// (the time bound: 100 a second times twice 50 ms is 10 in flight, and
// 2√10 above it for bursts, 17), where the adaptive limit alone lets them
// queue to its limit; once the load fits again, the bound is lifted.
func TestAdmissionTimeBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 50 * time.Millisecond}
		refused := 0
		for range 500 { // 5 s calm
			refused += s.tick(1)
		}
		calm := s.mean()
		if st := s.a.Stats(); refused != 0 || st.Bound != 0 {
			t.Fatalf("calm: %d refused, stats %+v; want none and no bound", refused, st)
		}
		refused = 0
		for i := range 1000 { // 10 s at ten times the pace
			if i == 500 {
				s.took = nil // the last 5 s
			}
			refused += s.tick(10)
		}
		st := s.a.Stats()
		if refused < 5000 || st.Bound < 15 || st.Bound > 19 {
			t.Fatalf("overload: %d refused, stats %+v; want most refused and a bound near 17", refused, st)
		}
		if m := s.mean(); m > calm*7/2 {
			t.Fatalf("under overload the admitted orders took %v on average, calm %v: want at most 3.5 times", m, calm)
		} else {
			t.Logf("calm %v, under overload %v with a bound of %d", calm, m, st.Bound)
		}
		for len(s.fifo) > 0 { // the queue drains
			if s.tick(0) > 0 {
				t.Fatal("refused with no load")
			}
		}
		refused = 0
		for range 200 { // 2 s calm again
			refused += s.tick(1)
		}
		if st := s.a.Stats(); refused != 0 || st.Bound != 0 {
			t.Fatalf("calm after the overload: %d refused, stats %+v; want none and no bound", refused, st)
		}
	})
}

// TestAdmissionTimeBoundWhenADependencyStalls: the same shop, calm at 100
// orders a second, then its orders wait on something other than its load
// (a dependency failing): each takes 2 s, so it finishes a fraction of
// what it did. Offered the same load, the adaptive limit refuses what it
// cannot hold, but no time bound is set from that pace, which would admit
// fewer orders still (its floor of 8 per 2 s) and starve the shop.
func TestAdmissionTimeBoundWhenADependencyStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 50 * time.Millisecond}
		for range 500 {
			s.tick(1)
		}
		s.least = 2 * time.Second
		refused, before := 0, s.id
		for range 2000 { // 20 s
			refused += s.tick(1)
			if st := s.a.Stats(); st.Bound > 0 {
				t.Fatalf("a time bound while a dependency stalls the shop: %+v", st)
			}
		}
		if refused == 0 || s.id == before {
			t.Fatalf("%d refused and %d admitted in the stall, want some of each", refused, s.id-before)
		}
	})
}

// TestAdmissionTimeBoundReference: the same shop, first calm but slow
// (each order 200 ms, as a shop past its capacity that has not yet
// refused), then calm at 50 ms, then offered ten times what it finishes.
// The time bound is taken from the recent calm seconds at that pace, so
// the admitted orders take about three times 50 ms (17 in flight, as in
// TestAdmissionTimeBound), not twice 200.
func TestAdmissionTimeBoundReference(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 200 * time.Millisecond}
		for range 500 { // 5 s calm and slow
			s.tick(1)
		}
		s.least = 50 * time.Millisecond
		for len(s.fifo) > 0 {
			s.tick(0)
		}
		for range 1500 { // 15 s calm at 50 ms
			s.tick(1)
		}
		if st := s.a.Stats(); st.Bound != 0 {
			t.Fatalf("calm: stats %+v; want no bound", st)
		}
		s.took = nil
		for range 1000 { // 10 s at ten times the pace
			s.tick(10)
		}
		st := s.a.Stats()
		if st.Bound < 15 || st.Bound > 19 {
			t.Fatalf("overload: stats %+v; want a bound near 17 (100 a second times twice 50 ms, and room for bursts)", st)
		}
		if m := s.mean(); m > 175*time.Millisecond {
			t.Fatalf("under overload the admitted orders took %v on average: want at most 3.5 times 50 ms", m)
		}
	})
}

// TestAdmissionTimeBoundUnderfed: a shop that finishes 100 orders a
// second, each 200 ms after its admission (20 in flight), calm, then
// offered ten times that (a bound near 53: 100 a second times twice
// 200 ms is 40, and 2√40 above it), then 30 orders at once every half
// second, more than its adaptive limit holds at once but fewer than it
// finishes. The bound stays near 53: it is taken from the calm seconds'
// pace, not from the pace the bound itself let through, which falls with
// each burst refused (50 a second, a bound of 29).
func TestAdmissionTimeBoundUnderfed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 200 * time.Millisecond}
		for range 500 { // 5 s calm
			s.tick(1)
		}
		for range 300 { // 3 s at ten times the pace
			s.tick(10)
		}
		for len(s.fifo) > 0 {
			s.tick(0)
		}
		before, refused := s.id, 0
		for i := range 1000 { // 10 s of bursts
			n := 0
			if i%50 == 0 {
				n = 30
			}
			refused += s.tick(n)
		}
		st := s.a.Stats()
		if refused == 0 || st.Bound < 48 || st.Bound > 58 {
			t.Fatalf("bursts of 30 every half second: %d admitted and %d refused in 10 s, stats %+v; want some refused and a bound near 53", s.id-before, refused, st)
		}
	})
}

// TestAdmissionTimeBoundFromQuiet: a shop whose orders take 20 ms alone
// and 9 ms more for each order in flight beside them, able to end 100 a
// second once about 20 are in flight. Calm at 25 a second (orders of
// about 20 ms), then offered ten times what it ends: no calm second was
// as busy, and twice the quiet time at 100 a second would hold it to the
// floor of 8 in flight, where it ends fewer than 90 a second. The bound
// is at least the adaptive limit it was first refused at, and the shop
// keeps ending at least 90 a second.
func TestAdmissionTimeBoundFromQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 20 * time.Millisecond, perInFlight: 9 * time.Millisecond}
		for i := range 500 { // 5 s calm, one order every 40 ms
			n := 0
			if i%4 == 0 {
				n = 1
			}
			if s.tick(n) > 0 {
				t.Fatal("refused while calm")
			}
		}
		for i := range 1000 { // 10 s at ten times the pace
			if i == 500 {
				s.took = nil // the last 5 s
			}
			s.tick(10)
		}
		st := s.a.Stats()
		if ended := len(s.took) / 5; ended < 90 || st.Bound <= 8 {
			t.Fatalf("from quiet into an overload: %d ended a second, stats %+v; want at least 90 a second and a bound above the floor of 8", ended, st)
		} else {
			t.Logf("%d ended a second, mean %v, stats %+v", ended, s.mean(), st)
		}
	})
}

// TestAdmissionRoom: the room is what Admit would still take, and the
// pace the orders ended at in the last second closed.
func TestAdmissionRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := order.NewAdmission()
		if r := a.Room(); r != (services.Room{Free: a.Stats().Limit}) {
			t.Fatalf("room of a new admission = %+v; want its limit %d free", r, a.Stats().Limit)
		}
		n := fill(t, a)
		p, ok := a.Admit() // refused: full
		if r := a.Room(); ok || r.Free != 0 || r.Placing != 0 {
			t.Fatalf("room when full = %+v (admitted %v), want none", r, ok)
		}
		for id := range int64(5) {
			a.Ended(placeSaga(id + 1))
		}
		p, ok = a.Admit()
		if r := a.Room(); !ok || r.Free != 4 || r.Placing != 1 {
			t.Fatalf("room after 5 of %d ended and 1 admitted = %+v; want 4 free and 1 being placed", n, r)
		}
		a.Hold(n+1, p)
		time.Sleep(time.Second)
		if r := a.Room(); r != (services.Room{Free: 4, Ends: 5}) {
			t.Fatalf("room a second later = %+v; want 4 free and 5 ended a second", r)
		}
	})
}

// TestAdmissionRefusedElsewhere: the shop of TestAdmissionTimeBound with
// its new orders refused before they reach it whenever its Room says none
// is left, as the gateway does: Admit itself refuses none, and the
// refusals it is told of set the time bound as its own do, so the orders
// admitted under overload take no longer than when it refuses them
// itself.
func TestAdmissionRefusedElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fifoShop{a: order.NewAdmission(), least: 50 * time.Millisecond}
		for range 500 { // 5 s calm
			s.tick(1)
		}
		calm := s.mean()
		elsewhere := 0
		for i := range 1000 { // 10 s at ten times the pace
			if i == 500 {
				s.took = nil
			}
			before := elsewhere
			for range 10 {
				if s.a.Room().Free == 0 {
					elsewhere++
				} else if !s.offer() {
					t.Fatal("refused with room")
				}
			}
			s.a.RefusedElsewhere(elsewhere - before)
			s.tick(0)
		}
		st := s.a.Stats()
		if elsewhere < 5000 || st.Refused > 0 || st.Bound < 15 || st.Bound > 19 {
			t.Fatalf("overload: %d refused before the shop, stats %+v; want most refused before it, none by it, and a bound near 17", elsewhere, st)
		}
		if m := s.mean(); m > calm*7/2 {
			t.Fatalf("under overload the admitted orders took %v on average, calm %v: want at most 3.5 times", m, calm)
		} else {
			t.Logf("calm %v, under overload %v with a bound of %d; refused %d before the shop", calm, m, st.Bound, elsewhere)
		}
	})
}
