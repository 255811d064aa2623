package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/deadletter"
	"github.com/junction-go/junction/internal/deadletter/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestDeadLetters: a letter is kept whole (headers, a binary body), listed
// newest first, and counts its redrives; a missing one is not found.
func TestDeadLetters(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st, err := store.New(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		died := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		letter := deadletter.Letter{MessageID: "m1", Topic: "payments.commands", Group: "payment-service", Type: "CapturePayment", Reason: "panic: boom",
			Attempts: 1, DiedAt: died, Headers: map[string]string{"ce-id": "m1"}, Body: []byte{0, 1, 2, 255}, Status: deadletter.StatusDead}
		for _, l := range []deadletter.Letter{letter, {MessageID: "m2", Topic: "t", Group: "g", Type: "T", Reason: "r", Attempts: 5, DiedAt: died, Status: deadletter.StatusDead}} {
			if err := st.DB().InTx(ctx, func(tx *sql.Tx) error { return st.AddTx(ctx, tx, l) }); err != nil {
				t.Fatal(err)
			}
		}
		list, err := st.List(ctx, 10)
		if err != nil || len(list) != 2 || list[0].MessageID != "m2" {
			t.Fatalf("List = %+v, %v; want m2 then m1", list, err)
		}
		got, err := st.Get(ctx, list[1].ID)
		letter.ID = list[1].ID
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(letter, got); diff != "" {
			t.Errorf("Get (-want +got):\n%s", diff)
		}
		for want := 1; want <= 2; want++ {
			if n, err := st.MarkRedriven(ctx, letter.ID); err != nil || n != want {
				t.Errorf("MarkRedriven = %d, %v; want %d", n, err, want)
			}
		}
		if _, err := st.Get(ctx, 99); !fault.Is(err, fault.NotFound) {
			t.Errorf("a missing letter = %v, want not found", err)
		}
		if _, err := st.MarkRedriven(ctx, 99); !fault.Is(err, fault.NotFound) {
			t.Errorf("redriving a missing letter = %v, want not found", err)
		}
	})
}
