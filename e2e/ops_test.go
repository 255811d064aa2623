package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOpsAPI: the ops dashboard's API answers administrators only; it
// lists every instance with its metrics; an outage set on the payment
// provider through it opens payment-service's breaker and orders are
// rejected with their sagas compensated; an instance killed through it is
// restarted by junction up; each action is logged with who did it.
func TestOpsAPI(t *testing.T) {
	s := startShop(t, nil, nil, "--fault-links")
	alice := s.customers[0]
	for _, path := range []string{"/api/admin/ops/instances", "/api/admin/ops/metrics", "/api/admin/ops/graph", "/api/admin/ops/provider"} {
		if r := alice.do("GET", path, nil); r.Status != http.StatusForbidden {
			t.Errorf("a customer's GET %s = %d, want 403", path, r.Status)
		}
	}
	if r := alice.do("POST", "/api/admin/ops/instances/payment-provider-1/kill", nil); r.Status != http.StatusForbidden {
		t.Errorf("a customer's kill = %d, want 403", r.Status)
	}

	var m struct {
		Instances []struct {
			ID      string `json:"id"`
			Service string `json:"service"`
			Ready   bool   `json:"ready"`
			Samples []struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
				Value  float64           `json:"value"`
			} `json:"samples"`
		} `json:"instances"`
	}
	s.admin.do("GET", "/api/admin/ops/metrics", nil).decode(t, &m)
	services := map[string]bool{}
	for _, in := range m.Instances {
		if in.Ready {
			services[in.Service] = true
		}
	}
	if len(services) != 10 {
		t.Errorf("ready services in the scrape: %v, want all 10", services)
	}

	// The payment provider's outage, set as the Faults page sets it.
	if r := s.admin.do("PUT", "/api/admin/ops/provider", map[string]any{"outage": true}); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"outage":true`) {
		t.Fatalf("PUT provider outage = %d %s", r.Status, r.Body)
	}
	breaker := func() (float64, bool) {
		s.admin.do("GET", "/api/admin/ops/metrics", nil).decode(t, &m)
		for _, in := range m.Instances {
			for _, x := range in.Samples {
				if x.Name == "resilience_breaker_state" && x.Labels["dependency"] == "payment-provider" {
					return x.Value, true
				}
			}
		}
		return 0, false
	}
	var ids []int64
	eventually(t, 60*time.Second, "payment-service's breaker open after rejected orders", func() error {
		a := &attempt{key: fmt.Sprintf("ops-outage-%d", len(ids)), items: []line{{SKU: "JX-MUG", Quantity: 1}}}
		s.place(alice, a, "")
		if a.id != 0 {
			ids = append(ids, a.id)
		}
		if st, ok := breaker(); !ok || st != 2 {
			return fmt.Errorf("breaker state %v (found %t), want 2 (open) after %d orders", st, ok, len(ids))
		}
		return nil
	})
	// Past the authorize step's deadline (three attempts of 5 s) the saga
	// gives up and compensates; the void waits for the provider, which
	// takes it once the faults are cleared.
	var saga struct {
		Status string `json:"status"`
	}
	sagaOf := func(id int64) string {
		s.admin.do("GET", fmt.Sprintf("/api/admin/sagas/%d", id), nil).decode(t, &saga)
		return saga.Status
	}
	eventually(t, 40*time.Second, "the first order's saga compensating", func() error {
		if st := sagaOf(ids[0]); st != "compensating" && st != "compensated" {
			return fmt.Errorf("saga %d is %s", ids[0], st)
		}
		return nil
	})
	if r := s.admin.do("PUT", "/api/admin/ops/provider", map[string]any{}); r.Status != http.StatusOK {
		t.Errorf("clear the faults = %d %s", r.Status, r.Body)
	}
	eventually(t, 60*time.Second, "every order's saga compensated", func() error {
		for _, id := range ids {
			if st := sagaOf(id); st != "compensated" {
				return fmt.Errorf("saga %d is %s", id, st)
			}
		}
		return nil
	})

	// A link's faults, as junction chaos link sets them.
	type link struct {
		Name   string   `json:"name"`
		Down   bool     `json:"down"`
		Toxics []string `json:"toxics"`
	}
	links := func() map[string]link {
		var out struct {
			Links []link `json:"links"`
		}
		s.admin.do("GET", "/api/admin/ops/links", nil).decode(t, &out)
		m := map[string]link{}
		for _, l := range out.Links {
			m[l.Name] = l
		}
		return m
	}
	if l, ok := links()["inventory-service-1"]; !ok || l.Down || len(l.Toxics) != 0 {
		t.Fatalf("links: inventory-service-1 = %+v (found %t), want healthy", l, ok)
	}
	if r := s.admin.do("PUT", "/api/admin/ops/links/inventory-service-1", map[string]any{"latencyMs": 200, "down": true}); r.Status != http.StatusOK {
		t.Fatalf("PUT link faults = %d %s", r.Status, r.Body)
	}
	if l := links()["inventory-service-1"]; !l.Down || len(l.Toxics) != 2 || !strings.HasPrefix(l.Toxics[0], "latency") {
		t.Errorf("after the PUT: %+v, want down with latency both ways", l)
	}
	if r := s.admin.do("PUT", "/api/admin/ops/links/inventory-service-1", map[string]any{}); r.Status != http.StatusOK {
		t.Fatalf("heal the link = %d %s", r.Status, r.Body)
	}
	if l := links()["inventory-service-1"]; l.Down || len(l.Toxics) != 0 {
		t.Errorf("healed: %+v", l)
	}
	if r := s.admin.do("PUT", "/api/admin/ops/links/nowhere", map[string]any{}); r.Status != http.StatusNotFound {
		t.Errorf("an unknown link = %d %s, want 404", r.Status, r.Body)
	}
	if r := s.admin.do("PUT", "/api/admin/ops/links/inventory-service-1", map[string]any{"latencyMs": -5}); r.Status != http.StatusBadRequest {
		t.Errorf("a negative latency = %d %s, want 400", r.Status, r.Body)
	}

	// Kill an instance; junction up restarts it.
	if r := s.admin.do("POST", "/api/admin/ops/instances/payment-provider-1/kill", nil); r.Status != http.StatusOK {
		t.Fatalf("kill payment-provider-1 = %d %s", r.Status, r.Body)
	}
	if r := s.admin.do("POST", "/api/admin/ops/instances/payment-provider-1/explode", nil); r.Status != http.StatusBadRequest {
		t.Errorf("an unknown action = %d %s, want 400", r.Status, r.Body)
	}
	if r := s.admin.do("POST", "/api/admin/ops/instances/nobody-1/kill", nil); r.Status != http.StatusNotFound {
		t.Errorf("an unknown instance = %d %s, want 404", r.Status, r.Body)
	}
	eventually(t, 30*time.Second, "payment-provider-1 restarted", func() error {
		if !strings.Contains(s.sys.out.String(), "payment-provider-1 exited") {
			return fmt.Errorf("no restart in the output")
		}
		return nil
	})
	logged := false
	for _, rec := range s.sys.instanceLog("gateway-1") {
		if rec.Msg == "ops: instance action" && rec.By == "admin" && rec.Instance == "payment-provider-1" {
			logged = true
		}
	}
	if !logged {
		t.Error("the gateway did not log the kill with who asked for it")
	}
}
