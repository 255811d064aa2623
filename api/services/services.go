// Package services names every process of the shop as the registry knows
// it: the names services find each other by (discovery), that instance ids
// start with, and that are their OpenTelemetry service.name. Part of the
// contract, as topics and event types are (api/events).
package services

// The registry names.
const (
	Registry        = "registry"
	Broker          = "broker"
	Gateway         = "gateway"
	User            = "user-service"
	Order           = "order-service"
	Inventory       = "inventory-service"
	Payment         = "payment-service"
	Shipping        = "shipping-service"
	Notification    = "notification-service"
	DeadLetter      = "deadletter-service"
	PaymentProvider = "payment-provider" // stands for a third party that only payment-service calls
)

// All are the services that register, in name order (the registry itself
// does not).
func All() []string {
	return []string{Broker, DeadLetter, Gateway, Inventory, Notification, Order, Payment, PaymentProvider, Shipping, User}
}
