package inventory_test

import (
	"testing"

	"github.com/junction-go/junction/internal/inventory"
)

func TestReservationRules(t *testing.T) {
	lines := []inventory.Line{{SKU: "JX-MUG", Quantity: 2}, {SKU: "JX-PIN", Quantity: 1}}
	prices := map[string]inventory.Product{"JX-MUG": {Price: 900, Currency: "EUR"}, "JX-PIN": {Price: 250, Currency: "EUR"}}
	if r := inventory.ReservedAt(7, lines, prices); r != (inventory.Reservation{OrderID: 7, State: inventory.Reserved, Total: 2050, Currency: "EUR"}) {
		t.Errorf("ReservedAt = %+v, want 2 x 900 + 250 EUR reserved", r)
	}
	short := inventory.Line{SKU: "JX-LAST-ONE", Quantity: 2}
	if r := inventory.RejectedFor(7, short, inventory.Product{Stock: 1}, true); r.State != inventory.Rejected || r.Reason != "out of stock: JX-LAST-ONE (1 left, 2 wanted)" {
		t.Errorf("RejectedFor = %+v", r)
	}
	if r := inventory.RejectedFor(7, short, inventory.Product{}, false); r.Reason != "JX-LAST-ONE is not sold here" {
		t.Errorf("RejectedFor an unknown SKU = %+v", r)
	}

	res := func(s inventory.ReservationState) inventory.Reservation {
		return inventory.Reservation{OrderID: 7, State: s, Total: 900, Currency: "EUR"}
	}
	releases := []struct {
		name             string
		prev             inventory.Reservation
		exists           bool
		want             inventory.Reservation
		changed, restock bool
	}{
		{"before any reservation: a mark", inventory.Reservation{}, false, inventory.Reservation{OrderID: 7, State: inventory.Released, Reason: "released before it was reserved"}, true, false},
		{"reserved: stock back", res(inventory.Reserved), true, res(inventory.Released), true, true},
		{"committed (a cancelled confirmed order): stock back", res(inventory.Committed), true, res(inventory.Released), true, true},
		{"rejected: nothing held", res(inventory.Rejected), true, res(inventory.Rejected), false, false},
		{"released twice: once", res(inventory.Released), true, res(inventory.Released), false, false},
	}
	for _, tt := range releases {
		got, changed, restock := inventory.Release(tt.prev, tt.exists, 7)
		if got != tt.want || changed != tt.changed || restock != tt.restock {
			t.Errorf("Release, %s = %+v changed %v restock %v; want %+v %v %v", tt.name, got, changed, restock, tt.want, tt.changed, tt.restock)
		}
	}
	for _, s := range []inventory.ReservationState{inventory.Rejected, inventory.Released, inventory.Committed} {
		if _, changed := inventory.Commit(res(s), true); changed {
			t.Errorf("Commit of a %s reservation changed it", s)
		}
	}
	if got, changed := inventory.Commit(res(inventory.Reserved), true); !changed || got.State != inventory.Committed {
		t.Errorf("Commit of a reserved reservation = %+v %v", got, changed)
	}
	if _, changed := inventory.Commit(inventory.Reservation{}, false); changed {
		t.Error("Commit with no reservation changed something")
	}
}
