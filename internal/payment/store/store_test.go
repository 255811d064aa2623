package store_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/payment"
	"github.com/junction-go/junction/internal/payment/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestPayments: a payment is put and read back whole, in and out of a
// transaction; put again it replaces the first; an order without one is
// not found.
func TestPayments(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st, err := store.New(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		put := func(p payment.Payment) {
			t.Helper()
			if err := st.Outbox().InTx(ctx, func(tx *sql.Tx) error { return st.Put(ctx, tx, p) }); err != nil {
				t.Fatal(err)
			}
		}
		held := payment.Payment{OrderID: 7, PaymentID: "pay_1", State: payment.Authorized, Amount: 4200, Currency: "EUR"}
		put(held)
		if got, err := st.Get(ctx, nil, 7); err != nil || got != held {
			t.Errorf("Get = %+v, %v; want %+v", got, err, held)
		}
		taken := held
		taken.State, taken.Reason = payment.Captured, "confirmed"
		put(taken)
		err = st.Outbox().InTx(ctx, func(tx *sql.Tx) error {
			got, err := st.Get(ctx, tx, 7)
			if err != nil || got != taken {
				t.Errorf("Get in a transaction = %+v, %v; want %+v", got, err, taken)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, nil, 8); !fault.Is(err, fault.NotFound) {
			t.Errorf("an order without a payment = %v, want not found", err)
		}
	})
}
