package main

import (
	"context"
	"log/slog"
	"slices"

	"github.com/junction-go/junction/api/services"
)

// service is one row of the table of what junction runs: all that up,
// serve, their completion and their help know of a service. A new service
// is one row here and its run function.
type service struct {
	name string
	// tier orders up's start, lowest first, each tier once every process
	// of the one below is ready (see ready); the stop goes the other way.
	tier int
	// ready is what the tiers above wait for: nothing, the instance
	// answering (the registry itself), or it being registered (it
	// registers once it serves).
	ready readiness
	// scales: up's --replicas may run several instances of it.
	scales bool
	// stores: it has a database and connects to the broker (its start-up
	// line shows both).
	stores bool
	// limited: its servers and consumers admit their work through a
	// resilience.ServerLimit (--server-limit). Not the gateway, which has
	// its own limits, nor a service whose work is mostly waiting on
	// another (payment-service on the provider: a limit measured on that
	// wait would starve it whenever the provider is slow).
	limited bool
	// run serves one instance until ctx ends.
	run func(ctx context.Context, cfg serveConfig, log *slog.Logger) error
}

type readiness int

const (
	readyStarted    readiness = iota // nothing to wait for
	readyAnswers                     // its API answers (the registry)
	readyRegistered                  // it is in the registry
)

// serviceTable is every service, in up's start order.
var serviceTable = []service{
	{name: services.Registry, tier: 0, ready: readyAnswers, run: serveRegistry},
	{name: services.Broker, tier: 1, ready: readyRegistered, run: serveBroker},
	{name: services.PaymentProvider, tier: 1, scales: true, run: servePaymentProvider},
	{name: services.User, limited: true, tier: 2, scales: true, stores: true, run: serveUsers},
	{name: services.Inventory, limited: true, tier: 2, scales: true, stores: true, run: serveInventory},
	{name: services.Payment, tier: 2, scales: true, stores: true, run: servePayments},
	{name: services.Shipping, limited: true, tier: 2, scales: true, stores: true, run: serveShipping},
	{name: services.DeadLetter, limited: true, tier: 2, scales: true, stores: true, run: serveDeadLetters},
	// Tier 3 calls tier 2 (order-service: user-service and inventory-service).
	{name: services.Notification, limited: true, tier: 3, scales: true, stores: true, run: serveNotifications},
	{name: services.Order, limited: true, tier: 3, scales: true, stores: true, run: serveOrders},
	// Last: its socket is held by up from the start, so early callers wait.
	{name: services.Gateway, tier: 4, scales: true, run: serveGateway},
}

// serviceNamed returns the row of name.
func serviceNamed(name string) (service, bool) {
	i := slices.IndexFunc(serviceTable, func(s service) bool { return s.name == name })
	if i < 0 {
		return service{}, false
	}
	return serviceTable[i], true
}

// serviceNames returns the names of the services that match keep (every
// one when keep is nil), in table order.
func serviceNames(keep func(service) bool) []string {
	var out []string
	for _, s := range serviceTable {
		if keep == nil || keep(s) {
			out = append(out, s.name)
		}
	}
	return out
}
