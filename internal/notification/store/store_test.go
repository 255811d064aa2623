package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/junction-go/junction/internal/notification"
	"github.com/junction-go/junction/internal/notification/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestNotifications: a customer's notifications come back newest first,
// only theirs, at most limit.
func TestNotifications(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st, err := store.New(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		for i := range 5 {
			n := notification.Notification{UserID: int64(1 + i%2), OrderID: int64(100 + i), Event: "OrderConfirmed", EventID: fmt.Sprintf("e%d", i), Text: fmt.Sprintf("order %d confirmed", 100+i), CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if err := st.DB().InTx(ctx, func(tx *sql.Tx) error { return st.AddTx(ctx, tx, n) }); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.List(ctx, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].OrderID != 104 || got[1].OrderID != 102 || got[0].UserID != 1 || got[0].EventID != "e4" || !got[0].CreatedAt.Equal(t0.Add(4*time.Second)) {
			t.Errorf("List(user 1, 2) = %+v, want orders 104 then 102", got)
		}
		if all, err := st.List(ctx, 2, 10); err != nil || len(all) != 2 {
			t.Errorf("List(user 2) = %d, %v; want 2", len(all), err)
		}
	})
}
