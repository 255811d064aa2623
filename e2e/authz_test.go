package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/discovery"
)

// TestAuthorizationMatrix tries every operation of api/openapi.yaml (which
// TestOpenAPIDescribesTheGateway keeps in step with the route tables, so a
// new route is covered here without anyone remembering) as the callers
// who must not get through:
//
//   - nobody (no token): 401 at the gateway, and 401 straight at the
//     service that owns the route, for every operation that needs a token;
//   - a customer at an administrator's operation: 403 (or 404, as if it
//     did not exist), at the gateway and at the owning service;
//   - another customer at a customer's resource (a path with an id):
//     404, as if it did not exist.
func TestAuthorizationMatrix(t *testing.T) {
	s := startShop(t, nil, nil)
	alice, bob := s.customers[0], s.customers[1]
	doc, _ := loadOpenAPI(t, s.sys.Gateway)

	// Alice's own things, for the paths with an id.
	a := &attempt{key: "authz-1", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(alice, a, "")
	if a.id == 0 {
		t.Fatalf("order not placed: %s", a.err)
	}
	var me struct {
		UserID int64 `json:"userId"`
	}
	alice.do("GET", "/api/users/me", nil).decode(t, &me)
	params := map[string]string{"id": fmt.Sprint(a.id), "orderId": fmt.Sprint(a.id), "sku": "JX-MUG", "code": "not_found",
		"traceId": strings.Repeat("ab", 16), "action": "resume", "name": "payment-provider-1", "file": "style.css"}
	userParams := map[string]string{"id": fmt.Sprint(me.UserID)}

	// Which service owns each forwarded prefix, from the gateway's routes.
	owners := ownersFromRoutes(t)
	reg := s.sys.registry(t)
	direct := func(path string) string {
		for _, o := range owners {
			if path == o.prefix || (strings.HasSuffix(o.prefix, "/") && strings.HasPrefix(path, o.prefix)) {
				v, err := reg.Lookup(t.Context(), o.service)
				if err != nil || len(v.Instances) == 0 {
					t.Fatalf("%s: %v", o.service, err)
				}
				return "http://" + v.Instances[0].Endpoints[discovery.EndpointHTTP]
			}
		}
		return "" // the gateway's own
	}
	nobody := newClient(t, s.sys.Gateway)
	// The services' ports are reached as the gateway reaches them, with
	// its certificate; with another service's, every route is refused.
	asGateway := &http.Client{Transport: s.sys.transportOf(t, "gateway-1"), Timeout: 10 * time.Second}
	asInventory := &http.Client{Transport: s.sys.transportOf(t, "inventory-service-1"), Timeout: 10 * time.Second}
	var paths []string
	for p := range doc.Paths.Map() {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tried := 0
	for _, tmpl := range paths {
		for method, op := range doc.Paths.Value(tmpl).Operations() {
			public := op.Security != nil && len(*op.Security) == 0
			if public {
				continue
			}
			values := params
			if strings.HasPrefix(tmpl, "/api/users/") {
				values = userParams
			}
			path := regexp.MustCompile(`\{([^}]+)\}`).ReplaceAllStringFunc(tmpl, func(m string) string { return values[m[1:len(m)-1]] })
			owner := direct(path)
			at := func(c *client, base string) response {
				cc := *c
				cc.base = base
				if base != s.sys.Gateway {
					cc.http = asGateway
				}
				return cc.do(method, path, nil)
			}
			check := func(who string, c *client, want ...int) {
				t.Helper()
				for _, base := range []string{s.sys.Gateway, owner} {
					if base == "" {
						continue
					}
					tried++
					r := at(c, base)
					ok := false
					for _, w := range want {
						ok = ok || r.Status == w
					}
					where := "the gateway"
					if base != s.sys.Gateway {
						where = "the service itself"
					}
					if !ok {
						t.Errorf("%s %s as %s at %s = %d %s, want %v", method, path, who, where, r.Status, r.Body, want)
					}
				}
			}
			check("nobody", nobody, http.StatusUnauthorized)
			if owner != "" {
				// Another service's identity, even with the owner's own
				// customer's token: the call table refuses it.
				cc := *alice
				cc.base, cc.http = owner, asInventory
				tried++
				if r := cc.do(method, path, nil); r.Status != http.StatusForbidden {
					t.Errorf("%s %s as inventory-service at the service itself = %d %s, want 403", method, path, r.Status, r.Body)
				}
			}
			switch {
			case strings.HasPrefix(tmpl, "/api/admin/"):
				check("a customer", alice, http.StatusForbidden, http.StatusNotFound)
			case strings.Contains(tmpl, "{"):
				check("another customer", bob, http.StatusNotFound)
			}
		}
	}
	if tried < 60 {
		t.Errorf("only %d calls tried: the document or the owners were not read", tried)
	}
	t.Logf("%d calls tried, each refused", tried)
}

type owner struct{ prefix, service string }

// ownersFromRoutes reads which service the gateway forwards each prefix to
// (internal/gateway/routes.go).
func ownersFromRoutes(t *testing.T) []owner {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "internal", "gateway", "routes.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"User": services.User, "Order": services.Order, "Inventory": services.Inventory, "Shipping": services.Shipping,
		"Notification": services.Notification, "DeadLetter": services.DeadLetter}
	var out []owner
	for _, m := range regexp.MustCompile(`mux\.Handle\("(?:[A-Z]+ )?(/api/[^"]*)", .*g\.forward\(services\.(\w+)\)`).FindAllStringSubmatch(string(b), -1) {
		svc, ok := names[m[2]]
		if !ok {
			t.Fatalf("routes.go forwards to services.%s, which this test does not know", m[2])
		}
		out = append(out, owner{m[1], svc})
	}
	if len(out) == 0 {
		t.Fatal("no forwarded routes found in routes.go")
	}
	return out
}
