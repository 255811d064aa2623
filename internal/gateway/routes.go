package gateway

import (
	"net/http"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/internal/web"
	"github.com/junction-go/junction/rest"
)

// Handler returns every public route. Routes marked public need no token;
// every other one is refused with 401 before it reaches a service, which
// checks the token again (no service trusts the network). Every request
// counts against its address's rate and, signed in, its user's; past
// Limits.MaxInFlight requests at once, more are shed with 503.
func (g *Gateway) Handler() http.Handler {
	authn := auth.Require(g.verifier, g.log)
	perUser := limitUser(g.limits, g.log, &g.rateLimited)
	signedIn := func(h http.Handler) http.Handler { return authn(perUser(h)) }
	mux := http.NewServeMux()

	// Public.
	mux.Handle("POST /api/auth/login", g.forward(services.User))
	mux.Handle("POST /api/auth/refresh", g.forward(services.User))
	mux.Handle("POST /api/auth/logout", g.forward(services.User))
	mux.Handle("GET /api/auth/jwks", g.forward(services.User))
	mux.Handle("GET /.well-known/jwks.json", g.forward(services.User))
	// Fallback: the last good catalogue while inventory-service cannot answer.
	mux.Handle("GET /api/products", g.catalogue.wrap(g.forward(services.Inventory)))
	mux.Handle("GET /api/products/", g.forward(services.Inventory))

	// Signed in.
	mux.Handle("/api/users/", signedIn(g.forward(services.User)))
	// A new order is new work: refused here first when order-service
	// has been refusing orders (throttleNewWork).
	mux.Handle("POST /api/orders", signedIn(throttleNewWork(g.limits.ThrottleNewOrders, g.room, g.log, &g.throttled)(g.forward(services.Order))))
	mux.Handle("/api/orders", signedIn(g.forward(services.Order)))
	mux.Handle("/api/orders/", signedIn(g.forward(services.Order)))
	mux.Handle("/api/shipments/", signedIn(g.forward(services.Shipping)))
	mux.Handle("/api/notifications", signedIn(g.forward(services.Notification)))
	mux.Handle("/api/admin/keys", signedIn(g.forward(services.User)))
	mux.Handle("/api/admin/keys/", signedIn(g.forward(services.User)))
	mux.Handle("/api/admin/sagas", signedIn(g.forward(services.Order)))
	mux.Handle("/api/admin/sagas/", signedIn(g.forward(services.Order)))
	mux.Handle("/api/admin/deadletters", signedIn(g.forward(services.DeadLetter)))
	mux.Handle("/api/admin/deadletters/", signedIn(g.forward(services.DeadLetter)))

	if g.ops != nil {
		g.ops.routes(mux, signedIn)
	}
	mux.Handle("GET /{$}", web.Pages(http.HandlerFunc(index)))
	mux.Handle("GET /ops", web.Pages(nil))
	mux.Handle("GET /assets/", web.Assets())
	perAddress := limitAddress(g.limits, g.log, &g.rateLimited)
	api := rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(g.log), rest.Recover(g.log),
		shed(g.limits.MaxInFlight, g.log, &g.inFlight, &g.shed), perAddress)
	if g.live == nil {
		return api
	}
	// A WebSocket is one request for hours: it counts against the
	// address's rate once, and not against the requests in flight (its
	// own caps bound it).
	ws := rest.Chain(g.live, rest.RequestID, rest.AccessLog(g.log), rest.Recover(g.log), perAddress)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" && r.Method == http.MethodGet {
			ws.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func index(w http.ResponseWriter, _ *http.Request) {
	rest.JSON(w, http.StatusOK, map[string]any{
		"name": "junction",
		"links": map[string]string{
			"login":    "/api/auth/login",
			"products": "/api/products",
			"orders":   "/api/orders",
			"jwks":     "/.well-known/jwks.json",
		},
	})
}
