package main

import (
	"net/http/httptest"
	"testing"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/identity"
)

// TestCallTableCompiles: every service's rows of services.Calls make a
// policy, and the table's "any caller" is the policy's.
func TestCallTableCompiles(t *testing.T) {
	if services.AnyCaller != identity.Any {
		t.Fatalf("services.AnyCaller = %q, identity.Any = %q: the table's any caller would name nobody", services.AnyCaller, identity.Any)
	}
	for _, svc := range append(services.All(), services.Registry) {
		if _, err := policyOf(svc); err != nil {
			t.Errorf("policyOf(%s): %v", svc, err)
		}
	}
	p, err := policyOf(services.Registry)
	if err != nil {
		t.Fatal(err)
	}
	if r := httptest.NewRequest("GET", "/v1/services", nil); !p.AllowsHTTP(r, services.Inventory) {
		t.Error("the registry's catalog, a row of any caller, refuses inventory-service")
	}
}
