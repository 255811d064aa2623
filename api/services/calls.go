package services

// Operator is the identity of the people and tools that run the shop
// (junction up, the junction command line, a Prometheus that scrapes):
// not a service, but a caller the tables below name.
const Operator = "operator"

// AnyCaller, as a caller, is every identity of the shop.
const AnyCaller = "*"

// Call lets Callers call what Pattern matches on a service's internal
// ports: an http.ServeMux pattern for HTTP ("GET /.well-known/jwks.json",
// "/api/" for a subtree), a gRPC method or a service's prefix
// ("/user.v1.UserService/").
type Call struct {
	Pattern string
	Callers []string
}

// everyInstance are the routes every instance serves (internal/instance):
// the registry probes readiness, the gateway's ops API reads readiness and
// metrics for the dashboard.
var everyInstance = []Call{
	{"GET /healthz", []string{Registry, Gateway, Operator}},
	{"GET /readyz", []string{Registry, Gateway, Operator}},
	{"GET /metrics", []string{Gateway, Operator}},
	{"/grpc.health.v1.Health/", []string{Registry, Operator}},
	{"/grpc.reflection.v1.ServerReflection/", []string{Operator}},
	{"/grpc.reflection.v1alpha.ServerReflection/", []string{Operator}},
}

// tokenVerifiers are the services that fetch user-service's token keys.
var tokenVerifiers = []string{Gateway, Order, Inventory, Shipping, Notification, DeadLetter}

// calls are each service's own rows: who may call what. Only the gateway
// reaches the public API; service-to-service calls are named one by one.
var calls = map[string][]Call{
	User: {
		{"/api/", []string{Gateway}},
		{"GET /.well-known/jwks.json", tokenVerifiers},
		{"/user.v1.UserService/GetUser", []string{Order}},
	},
	Order: {
		{"/api/", []string{Gateway}},
	},
	Inventory: {
		{"/api/", []string{Gateway}},
		{"/inventory.v1.InventoryService/", []string{Order}},
	},
	Shipping:     {{"/api/", []string{Gateway}}},
	Notification: {{"/api/", []string{Gateway}}},
	DeadLetter:   {{"/api/", []string{Gateway}}},
	Payment:      {},
	Broker:       {},
	PaymentProvider: {
		{"/v1/", []string{Payment}},
		// The ops dashboard's fault switches and junction chaos.
		{"/v1/admin/", []string{Gateway, Operator}},
	},
	// Every identity registers and looks up; the registry itself lets an
	// identity register only instances of its own service (the operator
	// any), so an address found through it is the named service's.
	Registry: {
		{"PUT /v1/instances/{id}", []string{AnyCaller}},
		{"DELETE /v1/instances/{id}", []string{AnyCaller}},
		{"GET /v1/services", []string{AnyCaller}},
		{"GET /v1/services/{name}", []string{AnyCaller}},
		{"GET /v1/services/{name}/stream", []string{AnyCaller}},
		{"GET /v1/prometheus", []string{Operator}},
	},
}

// Calls are the rows of service's internal ports: its own and those every
// instance serves. A route or RPC no row names is refused to every
// caller. The gateway's port is public and has none.
func Calls(service string) []Call {
	own, ok := calls[service]
	if !ok {
		return nil
	}
	return append(append([]Call(nil), own...), everyInstance...)
}

// TokenAudiences are the aud of the access tokens user-service signs:
// the services that take them, each of which requires its own name
// (RFC 8725bis). A token is no good at any other (payment-service, the
// provider, the registry, the broker take none).
func TokenAudiences() []string {
	return []string{Gateway, User, Order, Inventory, Shipping, Notification, DeadLetter}
}
