package shipping_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/internal/shipping"
)

func TestLifecycle(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Second)
	scheduled := shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Scheduled, UpdatedAt: t0}
	ready := shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Ready, DispatchAt: t1, UpdatedAt: t0}
	left := shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Dispatched, TrackingCode: "JX00000007", DispatchAt: t1, DispatchedAt: t1, UpdatedAt: t1}

	t.Run("schedule", func(t *testing.T) {
		if got, ch := shipping.Schedule(shipping.Shipment{}, false, 7, 1, "", t0); !ch || got != scheduled {
			t.Errorf("new booking = %+v %v, want %+v", got, ch, scheduled)
		}
		refused := shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Refused, Reason: "no courier", UpdatedAt: t0}
		if got, ch := shipping.Schedule(shipping.Shipment{}, false, 7, 1, "no courier", t0); !ch || got != refused {
			t.Errorf("refused booking = %+v %v, want %+v", got, ch, refused)
		}
		cancelled := shipping.Shipment{OrderID: 7, State: shipping.Cancelled}
		if got, ch := shipping.Schedule(cancelled, true, 7, 1, "", t1); ch || got != cancelled {
			t.Errorf("booking after a cancel = %+v %v, want the cancel kept", got, ch)
		}
	})
	t.Run("confirm and dispatch", func(t *testing.T) {
		got, ch := shipping.Confirmed(scheduled, t1, t0)
		if !ch || got != ready {
			t.Errorf("confirmed = %+v %v, want %+v", got, ch, ready)
		}
		if _, ch := shipping.Confirmed(left, t1, t1); ch {
			t.Error("a dispatched shipment was confirmed again")
		}
		if shipping.Due(ready, t0) || !shipping.Due(ready, t1) || shipping.Due(scheduled, t1) {
			t.Error("Due: a ready shipment is due from its dispatch time on, and only then")
		}
		sh, msgs, err := shipping.Leave(ready, t1)
		if err != nil || sh != left || len(msgs) != 1 || msgs[0].Type != "ShipmentDispatched" || msgs[0].Key != "7" || msgs[0].Source == "" {
			t.Errorf("Leave = %+v %v %v, want %+v and one ShipmentDispatched of order 7", sh, msgs, err, left)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		tests := []struct {
			name    string
			prev    shipping.Shipment
			exists  bool
			want    shipping.Shipment
			changed bool
			refused string
		}{
			{"before any booking", shipping.Shipment{}, false, shipping.Shipment{OrderID: 7, State: shipping.Cancelled, Reason: "cancelled before it was booked", UpdatedAt: t1}, true, ""},
			{"scheduled", scheduled, true, shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Cancelled, UpdatedAt: t1}, true, ""},
			{"ready: its clock stops", ready, true, shipping.Shipment{OrderID: 7, UserID: 1, State: shipping.Cancelled, UpdatedAt: t1}, true, ""},
			{"dispatched: refused", left, true, left, false, "the shipment has left"},
			{"cancelled again", shipping.Shipment{OrderID: 7, State: shipping.Cancelled}, true, shipping.Shipment{OrderID: 7, State: shipping.Cancelled}, false, ""},
		}
		for _, tt := range tests {
			got, ch, refused := shipping.Cancel(tt.prev, tt.exists, 7, t1)
			if diff := cmp.Diff(tt.want, got); diff != "" || ch != tt.changed || refused != tt.refused {
				t.Errorf("%s: changed %v refused %q, want %v %q; shipment (-want +got):\n%s", tt.name, ch, refused, tt.changed, tt.refused, diff)
			}
		}
	})
	t.Run("refusals are fixed per order", func(t *testing.T) {
		n := 0
		for id := int64(1); id <= 1000; id++ {
			if shipping.Refuses(id, 0.2, 9) {
				n++
			}
			if shipping.Refuses(id, 0.2, 9) != shipping.Refuses(id, 0.2, 9) || shipping.Refuses(id, 0, 9) {
				t.Fatalf("order %d: refusal not fixed by order and seed, or refused at rate 0", id)
			}
		}
		if n < 150 || n > 250 {
			t.Errorf("%d of 1000 refused at rate 0.2", n)
		}
	})
}
