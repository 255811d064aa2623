package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/httpapi"
	"github.com/junction-go/junction/internal/order/ordertest"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

type users struct{}

func (users) GetUser(_ context.Context, id int64) (order.User, error) {
	return order.User{ID: id, Username: "u"}, nil
}

// keys returns a verifier of access tokens and what signs them.
func keys(t *testing.T) (*auth.Verifier, func(auth.Principal) string) {
	t.Helper()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := auth.NewSigner(key, 0, nil)
	verifier := auth.NewVerifier(auth.StaticKeySource(func() auth.JWKS { return auth.JWKS{Keys: []auth.JWK{auth.PublicJWK(key)}} }), nil)
	return verifier, func(p auth.Principal) string {
		t.Helper()
		tok, err := signer.Sign(p)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// serve has h answer a request with token tok and body (JSON) when not
// empty, and header's name and value pairs.
func serve(h http.Handler, method, path, tok, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestRoutes serves order-service's HTTP API over a real store and checks
// what each kind of request gets: status, headers and, for errors, the
// problem document's code.
func TestRoutes(t *testing.T) {
	verifier, token := keys(t)
	alice := token(auth.Principal{UserID: 1, Username: "alice", Role: auth.RoleCustomer})
	bob := token(auth.Principal{UserID: 2, Username: "bob", Role: auth.RoleCustomer})
	admin := token(auth.Principal{UserID: 3, Username: "admin", Role: auth.RoleAdmin})

	h := httpapi.Handler(ordertest.New(t, sqldbtest.SQLite(t), users{}, nil, nil).Service, verifier, slog.New(slog.DiscardHandler))
	do := func(method, path, tok, body string, header ...string) *httptest.ResponseRecorder {
		return serve(h, method, path, tok, body, header...)
	}
	code := func(rec *httptest.ResponseRecorder) string {
		var p rest.Problem
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		return p.Code
	}

	place := do("POST", "/api/orders", alice, `{"items":[{"sku":"JX-MUG","quantity":2}]}`, "Idempotency-Key", "k1")
	if place.Code != http.StatusCreated || place.Header().Get("Location") != "/api/orders/1" {
		t.Fatalf("POST /api/orders = %d %s (Location %q), want 201 at /api/orders/1", place.Code, place.Body, place.Header().Get("Location"))
	}
	if again := do("POST", "/api/orders", alice, `{"items":[{"sku":"JX-MUG","quantity":2}]}`, "Idempotency-Key", "k1"); again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("the same POST again = %d, Idempotent-Replayed %q; want 201 replayed", again.Code, again.Header().Get("Idempotent-Replayed"))
	}
	var o struct {
		OrderID int64  `json:"orderId"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(place.Body.Bytes(), &o); err != nil || o.OrderID != 1 || o.Status != "pending" {
		t.Errorf("order = %s, want order 1 pending", place.Body)
	}

	tests := []struct {
		name, method, path, tok, body string
		status                        int
		code                          string
	}{
		{"no token", "GET", "/api/orders/1", "", "", 401, "unauthorized"},
		{"a bad token", "GET", "/api/orders/1", "x.y.z", "", 401, "unauthorized"},
		{"the owner reads it", "GET", "/api/orders/1", alice, "", 200, ""},
		{"another customer: missing", "GET", "/api/orders/1", bob, "", 404, "not_found"},
		{"an administrator reads it", "GET", "/api/orders/1", admin, "", 200, ""},
		{"a malformed id", "GET", "/api/orders/abc", alice, "", 400, "invalid"},
		{"a wait that is not a duration", "GET", "/api/orders/1?wait=soon", alice, "", 400, "invalid"},
		{"a wait too long", "GET", "/api/orders/1?wait=1h", alice, "", 400, "invalid"},
		{"a body that is not JSON", "POST", "/api/orders", alice, `{"items":`, 400, "invalid"},
		{"no items", "POST", "/api/orders", alice, `{"items":[]}`, 400, "invalid"},
		{"a bad SKU", "POST", "/api/orders", alice, `{"items":[{"sku":"mug","quantity":1}]}`, 400, "invalid"},
		{"a list", "GET", "/api/orders?limit=5", alice, "", 200, ""},
		{"a list too long", "GET", "/api/orders?limit=1000", alice, "", 400, "invalid"},
		{"sagas for a customer", "GET", "/api/admin/sagas", alice, "", 403, "forbidden"},
		{"sagas for an administrator", "GET", "/api/admin/sagas", admin, "", 200, ""},
		{"a saga's bad cursor", "GET", "/api/admin/sagas?cursor=9", admin, "", 400, "invalid"},
		{"a saga", "GET", "/api/admin/sagas/1", admin, "", 200, ""},
		{"no such saga", "GET", "/api/admin/sagas/77", admin, "", 404, "not_found"},
		{"a method the path does not take", "DELETE", "/api/orders/1", alice, "", 405, "method_not_allowed"},
		{"cancel another's order", "POST", "/api/orders/1/cancel", bob, "", 404, "not_found"},
		{"cancel one's own pending order", "POST", "/api/orders/1/cancel", alice, "", 202, ""},
	}
	for _, tt := range tests {
		rec := do(tt.method, tt.path, tt.tok, tt.body)
		if rec.Code != tt.status || code(rec) != tt.code {
			t.Errorf("%s: %s %s = %d %s, want %d %q", tt.name, tt.method, tt.path, rec.Code, rec.Body, tt.status, tt.code)
		}
	}
}

// TestRoutesReportRoom: with order admission, every answer says how much
// room it has left as it answers (a new order takes one, an error is
// answered with it too); a count of refusals elsewhere that is not a
// number is ignored, the request answered as any other; without admission
// no answer says anything.
func TestRoutesReportRoom(t *testing.T) {
	verifier, token := keys(t)
	tok := token(auth.Principal{UserID: 1, Username: "alice", Role: auth.RoleCustomer})
	do := func(h http.Handler, method, path, body string, header ...string) *httptest.ResponseRecorder {
		return serve(h, method, path, tok, body, header...)
	}
	svc := ordertest.New(t, sqldbtest.SQLite(t), users{}, nil, nil).Service
	a := order.NewAdmission()
	svc.Admit(a)
	h := httpapi.Handler(svc, verifier, slog.New(slog.DiscardHandler))
	limit := a.Stats().Limit
	read := do(h, "GET", "/api/orders", "", services.RefusedHeader, "many")
	if got, want := read.Header().Get(services.RoomHeader), (services.Room{Free: limit}).String(); read.Code != http.StatusOK || got != want {
		t.Fatalf("a read = %d with room %q, want 200 with %q", read.Code, got, want)
	}
	place := do(h, "POST", "/api/orders", `{"items":[{"sku":"JX-MUG","quantity":1}]}`)
	if got, want := place.Header().Get(services.RoomHeader), (services.Room{Free: limit - 1}).String(); place.Code != http.StatusCreated || got != want {
		t.Fatalf("an order = %d with room %q, want 201 with %q", place.Code, got, want)
	}
	bad := do(h, "GET", "/api/orders/x", "")
	if got := bad.Header().Get(services.RoomHeader); bad.Code != http.StatusBadRequest || got == "" {
		t.Errorf("a bad read = %d with room %q, want 400 with the room", bad.Code, got)
	}
	every := ordertest.New(t, sqldbtest.SQLite(t), users{}, nil, nil).Service
	every.Admit(nil)
	plain := httpapi.Handler(every, verifier, slog.New(slog.DiscardHandler))
	if got := do(plain, "GET", "/api/orders", "").Header().Get(services.RoomHeader); got != "" {
		t.Errorf("without admission an answer said room %q", got)
	}
}
