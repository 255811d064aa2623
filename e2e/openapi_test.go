package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// loadOpenAPI loads and validates api/openapi.yaml, served at base.
func loadOpenAPI(t *testing.T, base string) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatalf("load api/openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("api/openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// TestOpenAPIDescribesTheGateway runs the system and calls every
// operation of api/openapi.yaml through the gateway, as each kind of
// caller, on its successes and its documented failures; every request and
// every answer must match the document (kin-openapi), and every operation
// must have been seen to succeed. Then it reads the route tables: a route
// the gateway serves that the document lacks fails the test.
func TestOpenAPIDescribesTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	s := startSystem(t, t.TempDir(), "--fault-links")
	doc, router := loadOpenAPI(t, s.Gateway)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/css", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/javascript", openapi3filter.FileBodyDecoder)

	tokens := map[string]string{}
	for _, who := range []string{"alice", "bob", "admin"} {
		c := newClient(t, s.Gateway)
		c.login(who, "junction")
		tokens[who] = c.token
	}
	hc := &http.Client{Timeout: 15 * time.Second}
	succeeded := map[string]bool{} // operationId -> seen a 2xx
	call := func(who, method, path string, body any, wantStatus int, header ...string) []byte {
		t.Helper()
		var raw []byte
		if body != nil {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		req, err := http.NewRequest(method, s.Gateway+path, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if who != "" {
			req.Header.Set("Authorization", "Bearer "+tokens[who])
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: not in api/openapi.yaml: %v", method, path, err)
			return nil
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && wantStatus < 400 {
			t.Errorf("%s %s: the request does not match the document: %v", method, path, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(raw))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantStatus {
			t.Errorf("%s %s as %q = %d %s, want %d", method, path, who, resp.StatusCode, got, wantStatus)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(got)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s %s as %q: the %d answer does not match the document: %v\n%s", method, path, who, resp.StatusCode, err, got)
		}
		if resp.StatusCode < 300 {
			succeeded[route.Operation.OperationID] = true
		}
		return got
	}

	// awaitOK waits until who's GET of path is answered 200 (what the
	// asynchronous part of the shop has yet to do), outside the check.
	awaitOK := func(what, who, path string) {
		r := newClient(t, s.Gateway)
		r.token = tokens[who]
		eventually(t, 15*time.Second, what, func() error {
			if got := r.do("GET", path, nil); got.Status != 200 {
				return fmt.Errorf("%d", got.Status)
			}
			return nil
		})
	}

	// Public.
	call("", "GET", "/", nil, 200)
	call("", "GET", "/problems/", nil, 200)
	call("", "GET", "/problems/not_found", nil, 200)
	call("", "GET", "/problems/no_such_code", nil, 404)
	call("", "POST", "/api/auth/login", map[string]string{"username": "alice", "password": "junction"}, 200)
	call("", "POST", "/api/auth/login", map[string]string{"username": "alice", "password": "wrong password"}, 401)
	call("", "POST", "/api/auth/login", map[string]string{"username": ""}, 400)
	var session struct {
		RefreshToken string `json:"refreshToken"`
	}
	_ = json.Unmarshal(call("", "POST", "/api/auth/login", map[string]string{"username": "bob", "password": "junction"}, 200), &session)
	_ = json.Unmarshal(call("", "POST", "/api/auth/refresh", map[string]string{"refreshToken": session.RefreshToken}, 200), &session)
	call("", "POST", "/api/auth/refresh", map[string]string{"refreshToken": "not-one"}, 401)
	call("", "POST", "/api/auth/refresh", map[string]string{}, 401)
	call("", "POST", "/api/auth/logout", map[string]string{"refreshToken": session.RefreshToken}, 204)
	call("", "POST", "/api/auth/refresh", map[string]string{"refreshToken": session.RefreshToken}, 401)
	call("", "GET", "/api/auth/jwks", nil, 200)
	call("", "GET", "/.well-known/jwks.json", nil, 200)
	call("", "GET", "/api/products", nil, 200)
	call("", "GET", "/api/products/JX-MUG", nil, 200)
	call("", "GET", "/api/products/NO-SUCH-SKU", nil, 404)

	// A customer.
	call("", "GET", "/api/users/me", nil, 401)
	me := call("alice", "GET", "/api/users/me", nil, 200)
	var user struct {
		UserID int64 `json:"userId"`
	}
	_ = json.Unmarshal(me, &user)
	call("alice", "GET", fmt.Sprintf("/api/users/%d", user.UserID), nil, 200)
	call("bob", "GET", fmt.Sprintf("/api/users/%d", user.UserID), nil, 404) // another user is answered as missing
	call("alice", "GET", "/api/users/x", nil, 400)
	placed := call("alice", "POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}}, 201, "Idempotency-Key", "openapi-1")
	call("alice", "POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}}, 201, "Idempotency-Key", "openapi-1")
	call("alice", "POST", "/api/orders", map[string]any{"items": []map[string]any{}}, 400)
	call("alice", "POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-LAST-ONE", "quantity": 50}}}, 409)
	var o struct {
		OrderID int64 `json:"orderId"`
	}
	_ = json.Unmarshal(placed, &o)
	call("alice", "GET", fmt.Sprintf("/api/orders/%d?wait=10s", o.OrderID), nil, 200)
	call("bob", "GET", fmt.Sprintf("/api/orders/%d", o.OrderID), nil, 404)
	call("alice", "GET", fmt.Sprintf("/api/orders/%d/events?after=1", o.OrderID), nil, 200)
	call("alice", "GET", fmt.Sprintf("/api/orders/%d/events?after=x", o.OrderID), nil, 400)
	call("bob", "GET", fmt.Sprintf("/api/orders/%d/events", o.OrderID), nil, 404)
	call("alice", "GET", "/api/orders/0", nil, 400)
	call("alice", "GET", "/api/orders?limit=5", nil, 200)
	call("alice", "GET", "/api/orders?limit=500", nil, 400)
	awaitOK("the shipment to be booked", "alice", fmt.Sprintf("/api/shipments/%d", o.OrderID))
	call("alice", "GET", fmt.Sprintf("/api/shipments/%d", o.OrderID), nil, 200)
	call("bob", "GET", fmt.Sprintf("/api/shipments/%d", o.OrderID), nil, 404)
	call("alice", "GET", "/api/notifications", nil, 200)
	second := call("alice", "POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}}, 201)
	_ = json.Unmarshal(second, &o)
	call("alice", "POST", fmt.Sprintf("/api/orders/%d/cancel", o.OrderID), nil, 202)
	call("bob", "POST", fmt.Sprintf("/api/orders/%d/cancel", o.OrderID), nil, 404)

	// An administrator.
	call("alice", "GET", "/api/admin/sagas", nil, 403)
	call("admin", "GET", "/api/admin/sagas?limit=1", nil, 200)
	call("admin", "GET", "/api/admin/sagas?status=completed", nil, 200)
	call("admin", "GET", "/api/admin/sagas?status=lost", nil, 400)
	call("admin", "GET", "/api/admin/sagas/1", nil, 200)
	call("admin", "GET", "/api/admin/sagas/999999", nil, 404)
	poison(t, s, "openapi-poison")
	awaitOK("the poison message to be a dead letter", "admin", "/api/admin/deadletters/1")
	call("alice", "GET", "/api/admin/deadletters", nil, 403)
	call("admin", "GET", "/api/admin/deadletters", nil, 200)
	call("admin", "GET", "/api/admin/deadletters/1", nil, 200)
	call("admin", "GET", "/api/admin/deadletters/999999", nil, 404)
	call("admin", "POST", "/api/admin/deadletters/1/redrive", nil, 200)

	// Signing keys.
	call("alice", "GET", "/api/admin/keys", nil, 403)
	call("admin", "GET", "/api/admin/keys", nil, 200)
	call("admin", "POST", "/api/admin/keys/rotate", map[string]any{"publishDelay": "1s"}, 400)
	call("alice", "POST", "/api/admin/keys/rotate", map[string]any{}, 403)
	call("admin", "POST", "/api/admin/keys/rotate", map[string]any{"publishDelay": "10m"}, 201)

	// The pages, and the ops dashboard's API.
	call("", "GET", "/ops", nil, 200)
	call("", "GET", "/assets/style.css", nil, 200)
	call("", "GET", "/assets/shop.js", nil, 200)
	call("", "GET", "/assets/nothing.js", nil, 404)
	call("alice", "GET", "/api/admin/ops/instances", nil, 403)
	call("admin", "GET", "/api/admin/ops/instances", nil, 200)
	call("admin", "GET", "/api/admin/ops/metrics", nil, 200)
	call("admin", "GET", "/api/admin/ops/graph?window=30s", nil, 200)
	call("admin", "GET", "/api/admin/ops/graph?window=never", nil, 400)
	traces := call("admin", "GET", "/api/admin/ops/traces?limit=1", nil, 200)
	var sums struct {
		Traces []struct {
			TraceID string `json:"traceId"`
		} `json:"traces"`
	}
	_ = json.Unmarshal(traces, &sums)
	if len(sums.Traces) == 1 {
		call("admin", "GET", "/api/admin/ops/traces/"+sums.Traces[0].TraceID, nil, 200)
	}
	call("admin", "GET", "/api/admin/ops/traces/"+strings.Repeat("ab", 16), nil, 404)
	call("admin", "GET", fmt.Sprintf("/api/admin/ops/orders/%d/traces", o.OrderID), nil, 200)
	call("admin", "GET", "/api/admin/ops/provider", nil, 200)
	call("admin", "PUT", "/api/admin/ops/provider", map[string]any{"latencyMs": 1}, 200)
	call("admin", "PUT", "/api/admin/ops/provider", map[string]any{}, 200)
	call("admin", "POST", "/api/admin/ops/instances/payment-provider-1/resume", nil, 200) // SIGCONT to a running process
	call("admin", "POST", "/api/admin/ops/instances/nobody-1/resume", nil, 404)
	call("admin", "GET", "/api/admin/ops/links", nil, 200)
	call("admin", "PUT", "/api/admin/ops/links/payment-provider-1", map[string]any{"latencyMs": 10}, 200)
	call("admin", "PUT", "/api/admin/ops/links/payment-provider-1", map[string]any{}, 200)
	call("admin", "PUT", "/api/admin/ops/links/nowhere", map[string]any{}, 404)

	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			if !succeeded[op.OperationID] {
				t.Errorf("%s %s (%s) was never seen to succeed", method, path, op.OperationID)
			}
		}
	}
	for _, r := range gatewayRoutes(t) {
		if !documented(doc, r) {
			t.Errorf("the gateway serves %s, which api/openapi.yaml lacks", r)
		}
	}
}

// poison publishes a malformed OrderCreated to the broker at url, which
// its consumers dead-letter. The stream exists once a service has used the
// topic: it waits for that.
func poison(t *testing.T, sys *system, id string) {
	t.Helper()
	nc, err := sys.natsAs(t, "operator")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("orders")
	m.Header.Set("ce-id", id)
	m.Header.Set("ce-type", "OrderCreated")
	m.Header.Set("ce-source", "e2e")
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("Nats-Msg-Id", id)
	m.Data = []byte("this is not json")
	eventually(t, 10*time.Second, "publish the poison message", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.PublishMsg(ctx, m)
		return err
	})
}

// route is a method and a path pattern the gateway serves ("GET
// /api/orders/{id}").
type route struct{ method, path string }

func (r route) String() string { return r.method + " " + r.path }

var routePattern = regexp.MustCompile(`mux\.Handle(?:Func)?\("(?:([A-Z]+) )?([^"]+)"`)

// gatewayRoutes reads the routes the gateway serves from the route tables
// (each service's httpapi/routes.go and the gateway's routes.go): the
// gateway's own routes with a method, and every service route under a
// path the gateway forwards.
func gatewayRoutes(t *testing.T) []route {
	t.Helper()
	read := func(file string) []route {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var rs []route
		for _, m := range routePattern.FindAllStringSubmatch(string(b), -1) {
			rs = append(rs, route{m[1], m[2]})
		}
		return rs
	}
	var forwarded []string // paths and subtrees ("/api/orders/") forwarded to a service
	var out []route
	gw := read(filepath.Join("..", "internal", "gateway", "routes.go"))
	if len(gw) == 0 {
		t.Fatal("no routes found in internal/gateway/routes.go")
	}
	for _, r := range gw {
		switch {
		case r.path == "/{$}":
			out = append(out, route{r.method, "/"})
		case r.path == "/assets/":
			out = append(out, route{r.method, "/assets/{file}"})
		case r.method != "" && !strings.HasPrefix(r.path, "/api/") && !strings.HasPrefix(r.path, "/.well-known/"):
			out = append(out, r) // served by the gateway itself
		default:
			forwarded = append(forwarded, r.path)
		}
	}
	out = append(out, route{"GET", "/problems/"}, route{"GET", "/problems/{code}"})  // rest.Routes adds them
	out = append(out, read(filepath.Join("..", "internal", "gateway", "ops.go"))...) // the gateway's own under /api/
	services, err := filepath.Glob(filepath.Join("..", "internal", "*", "httpapi", "routes.go"))
	if err != nil || len(services) == 0 {
		t.Fatalf("no service routes found: %v", err)
	}
	for _, f := range services {
		for _, r := range read(f) {
			for _, p := range forwarded {
				if r.path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(r.path, p)) {
					out = append(out, r)
					break
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b route) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

// documented reports whether doc has an operation for r; path parameters
// match whatever their names.
func documented(doc *openapi3.T, r route) bool {
	params := regexp.MustCompile(`\{[^}]+\}`)
	want := params.ReplaceAllString(r.path, "{}")
	for _, path := range doc.Paths.InMatchingOrder() {
		if params.ReplaceAllString(path, "{}") == want && doc.Paths.Value(path).GetOperation(r.method) != nil {
			return true
		}
	}
	return false
}
