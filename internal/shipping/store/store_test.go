package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/internal/shipping/store"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestStoreKeepsWhatTheRulesSay: a shipment saved is loaded back whole
// (zero times as none), saved again over itself, and the due ones are
// dispatched with their messages in the outbox, the others left alone.
func TestStoreKeepsWhatTheRulesSay(t *testing.T) {
	for _, b := range sqldbtest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.New(ctx, b.Open(t))
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			in := func(fn func(tx *sql.Tx) error) {
				t.Helper()
				if err := st.Outbox().InTx(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.Get(ctx, 7); !fault.Is(err, fault.NotFound) {
				t.Fatalf("Get of a shipment never saved = %v, want not found", err)
			}
			booked := shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Scheduled, UpdatedAt: t0}
			later := shipping.Shipment{OrderID: 8, UserID: 2, State: shipping.Ready, DispatchAt: t0.Add(time.Hour), UpdatedAt: t0}
			in(func(tx *sql.Tx) error {
				if _, exists, err := st.Load(ctx, tx, 7); err != nil || exists {
					t.Errorf("Load before any save = %v %v, want none", exists, err)
				}
				if err := st.Save(ctx, tx, booked); err != nil {
					return err
				}
				return st.Save(ctx, tx, later)
			})
			if got, err := st.Get(ctx, 7); err != nil || !cmp.Equal(got, booked) {
				t.Errorf("Get = %+v %v, want %+v", got, err, booked)
			}
			ready, _ := shipping.Confirmed(booked, t0, t0)
			in(func(tx *sql.Tx) error { return st.Save(ctx, tx, ready) })
			var seen []int64
			n, err := st.DispatchDue(ctx, t0.Add(time.Minute), func(sh shipping.Shipment) (shipping.Shipment, []*bus.Message, error) {
				seen = append(seen, sh.OrderID)
				return shipping.Leave(sh, t0.Add(time.Minute))
			})
			if err != nil || n != 1 || len(seen) != 1 || seen[0] != 7 {
				t.Fatalf("DispatchDue = %d %v, dispatched %v; want order 7 only", n, err, seen)
			}
			got, err := st.Get(ctx, 7)
			if err != nil || got.State != shipping.Dispatched || got.TrackingCode != "JX00000007" || !got.DispatchedAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("after dispatch: %+v %v", got, err)
			}
			if b, err := st.Outbox().Backlog(ctx); err != nil || b.Unsent != 1 {
				t.Errorf("outbox backlog = %+v %v, want the one ShipmentDispatched", b, err)
			}
			if got, _ := st.Get(ctx, 8); !cmp.Equal(got, later) {
				t.Errorf("a shipment not yet due was changed: %+v", got)
			}
		})
	}
}
