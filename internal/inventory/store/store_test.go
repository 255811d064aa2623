package store_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/internal/inventory/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

func newStore(t *testing.T, db *sqldb.DB) (*store.Store, *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	st, err := store.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddProducts(ctx, []inventory.Product{
		{SKU: "A", Name: "A", Price: 100, Currency: "EUR", Stock: 5},
		{SKU: "B", Name: "B", Price: 250, Currency: "EUR", Stock: 1},
	}); err != nil {
		t.Fatal(err)
	}
	return st, db
}

func stock(t *testing.T, st *store.Store) map[string]int64 {
	t.Helper()
	ps, err := st.Products(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, p := range ps {
		out[p.SKU] = p.Stock
	}
	return out
}

func inTx[T any](t *testing.T, db *sqldb.DB, fn func(tx *sql.Tx) (T, error)) T {
	t.Helper()
	var v T
	if err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		v, err = fn(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReserveIsAllOrNoneAndAnswersARepeatTheSame(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		st, db := newStore(t, db)
		ctx := context.Background()
		r := inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) {
			return inventory.Reserve(ctx, st.In(tx), 1, []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 2}})
		})
		if r.State != inventory.Rejected || r.Reason != "out of stock: B (1 left, 2 wanted)" {
			t.Errorf("Reserve short of B = %+v, want rejected naming B", r)
		}
		if got := stock(t, st); got["A"] != 5 || got["B"] != 1 {
			t.Errorf("stock after a rejected reservation = %v, want untouched", got)
		}
		r = inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) {
			return inventory.Reserve(ctx, st.In(tx), 2, []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}})
		})
		if r.State != inventory.Reserved || r.Total != 450 || r.Currency != "EUR" {
			t.Errorf("Reserve = %+v, want reserved, total 450 EUR", r)
		}
		again := inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) {
			return inventory.Reserve(ctx, st.In(tx), 2, []inventory.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 1}})
		})
		if again != r {
			t.Errorf("repeated Reserve = %+v, want the first answer %+v", again, r)
		}
		if got := stock(t, st); got["A"] != 3 || got["B"] != 0 {
			t.Errorf("stock = %v, want A 3, B 0 (taken once)", got)
		}
		for range 2 {
			inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) { return inventory.ReleaseOf(ctx, st.In(tx), 2) })
		}
		if got := stock(t, st); got["A"] != 5 || got["B"] != 1 {
			t.Errorf("stock after releasing twice = %v, want all back once", got)
		}
	})
}

func TestAReleaseBeforeTheReserveMakesTheReserveHoldNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		st, db := newStore(t, db)
		ctx := context.Background()
		inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) { return inventory.ReleaseOf(ctx, st.In(tx), 7) })
		r := inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) {
			return inventory.Reserve(ctx, st.In(tx), 7, []inventory.Line{{SKU: "A", Quantity: 1}})
		})
		if r.State != inventory.Released {
			t.Errorf("late Reserve = %+v, want released (holds nothing)", r)
		}
		if got := stock(t, st); got["A"] != 5 {
			t.Errorf("stock = %v, want untouched", got)
		}
	})
}

func TestCommittedStockStaysGoneUntilReleased(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		st, db := newStore(t, db)
		ctx := context.Background()
		inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) {
			return inventory.Reserve(ctx, st.In(tx), 3, []inventory.Line{{SKU: "A", Quantity: 4}})
		})
		inTx(t, db, func(tx *sql.Tx) (struct{}, error) { return struct{}{}, inventory.CommitOf(ctx, st.In(tx), 3) })
		held, err := st.Held(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if held["A"] != [2]int64{0, 4} {
			t.Errorf("held A = %v, want 0 reserved, 4 committed", held["A"])
		}
		// A cancelled confirmed order restocks.
		inTx(t, db, func(tx *sql.Tx) (inventory.Reservation, error) { return inventory.ReleaseOf(ctx, st.In(tx), 3) })
		if got := stock(t, st); got["A"] != 5 {
			t.Errorf("stock after restock = %v, want 5", got)
		}
	})
}

func TestConcurrentReservationsNeverOversell(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		st, db := newStore(t, db)
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		reserved := 0
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var r inventory.Reservation
				err := db.InTx(ctx, func(tx *sql.Tx) error {
					var err error
					r, err = inventory.Reserve(ctx, st.In(tx), int64(100+i), []inventory.Line{{SKU: "B", Quantity: 1}})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				if r.State == inventory.Reserved {
					mu.Lock()
					reserved++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if got := stock(t, st); reserved != 1 || got["B"] != 0 {
			t.Errorf("20 orders for the last B: %d reserved, %d left; want 1 and 0", reserved, got["B"])
		}
	})
}
