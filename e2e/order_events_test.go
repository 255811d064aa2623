package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/junction-go/junction/internal/paymentsim"
)

// historyOf names each entry: "status pending", "saga started",
// "reserve-stock sent", …
func historyOf(evs []orderEvent) []string {
	var out []string
	for _, ev := range evs {
		switch ev.Kind {
		case "status":
			out = append(out, "status "+ev.Status)
		case "saga":
			out = append(out, "saga "+ev.Outcome)
		default:
			out = append(out, ev.Step+" "+ev.Outcome)
		}
	}
	return out
}

// placedHistory is the history of an order placed, paid and shipped.
var placedHistory = []string{"status pending", "saga started",
	"reserve-stock sent", "reserve-stock succeeded", "authorize-payment sent", "authorize-payment succeeded",
	"schedule-shipment sent", "schedule-shipment succeeded", "capture-payment sent", "capture-payment succeeded",
	"saga completed", "status confirmed", "status shipped"}

type orderEvent struct {
	Seq     int64  `json:"seq"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Saga    string `json:"saga"`
	Step    string `json:"step"`
	Outcome string `json:"outcome"`
}

// TestOrderHistory: an order's history holds every change of its status
// and every step of its saga, numbered from 1 with no gap, in the order
// they happened; after= returns only what came later; nobody else sees it.
func TestOrderHistory(t *testing.T) {
	s := startShop(t, nil, nil)
	alice, bob := s.customers[0], s.customers[1]
	a := &attempt{key: "history-1", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(alice, a, "")
	if a.id == 0 {
		t.Fatalf("order not placed: %s", a.err)
	}
	path := fmt.Sprintf("/api/orders/%d/events", a.id)
	var all []orderEvent
	eventually(t, 20*time.Second, "the order shipped in its history", func() error {
		var page struct {
			OrderID int64        `json:"orderId"`
			Events  []orderEvent `json:"events"`
		}
		r := alice.do("GET", path, nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("GET %s = %d %s", path, r.Status, r.Body)
		}
		r.decode(t, &page)
		all = page.Events
		if len(all) == 0 || all[len(all)-1].Status != "shipped" {
			return fmt.Errorf("%d events, the last %+v", len(all), all[len(all)-1:])
		}
		return nil
	})
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: %+v", i, ev.Seq, all)
		}
	}
	kinds := historyOf(all)
	if !slices.Equal(kinds, placedHistory) {
		t.Errorf("history:\n  %v\nwant\n  %v", kinds, placedHistory)
	}

	var tail struct {
		Events []orderEvent `json:"events"`
	}
	r := alice.do("GET", path+"?after=10", nil)
	r.decode(t, &tail)
	if len(tail.Events) != len(all)-10 || tail.Events[0].Seq != 11 {
		t.Errorf("after=10: %+v, want seq 11 to %d", tail.Events, len(all))
	}
	for _, c := range []struct {
		who   *client
		query string
		want  int
	}{
		{bob, "", http.StatusNotFound}, // another customer's order does not exist for him
		{alice, "?after=-1", http.StatusBadRequest},
		{alice, "?limit=0", http.StatusBadRequest},
		{alice, "?limit=501", http.StatusBadRequest},
		{newClient(t, s.sys.Gateway), "", http.StatusUnauthorized},
	} {
		if r := c.who.do("GET", path+c.query, nil); r.Status != c.want {
			t.Errorf("GET %s%s = %d, want %d", path, c.query, r.Status, c.want)
		}
	}
	if r := s.admin.do("GET", path, nil); r.Status != http.StatusOK {
		t.Errorf("an administrator's GET %s = %d", path, r.Status)
	}

	// A declined card: the refusal, the compensation, the verdict.
	d := &attempt{key: "history-2", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(alice, d, paymentsim.DeclinedCard)
	if d.id == 0 {
		t.Fatalf("order not placed: %s", d.err)
	}
	dpath := fmt.Sprintf("/api/orders/%d/events", d.id)
	eventually(t, 20*time.Second, "the declined order rejected in its history", func() error {
		var page struct {
			Events []orderEvent `json:"events"`
		}
		alice.do("GET", dpath, nil).decode(t, &page)
		kinds = kinds[:0]
		for _, ev := range page.Events {
			kinds = append(kinds, ev.Kind+" "+ev.Step+" "+ev.Outcome+ev.Status)
		}
		want := []string{"status  pending", "saga  started", "step reserve-stock sent", "step reserve-stock succeeded",
			"step authorize-payment sent", "step authorize-payment failed", "step reserve-stock undo_sent", "step reserve-stock undone",
			"saga  compensated", "status  rejected"}
		if !slices.Equal(kinds, want) {
			return fmt.Errorf("history %v, want %v", kinds, want)
		}
		return nil
	})
}
