// Package events lists every topic, consumer group and event type of
// Junction's messaging, with the body of each event: one place for the
// asynchronous contract, as the .proto files are for gRPC.
//
// Events travel as CloudEvents 1.0 in binary mode (see package bus): the
// attributes are transport headers, the body is the JSON below, and the
// CloudEvents partition key is the order id, so that every event of one
// order is handled in order.
package events

import "time"

// Topics.
const (
	// TopicOrders carries the order lifecycle: OrderCreated, … Key: the
	// order id.
	TopicOrders = "orders"
)

// Consumer groups.
const (
	// GroupNotifications is notification-service on TopicOrders.
	GroupNotifications = "notification-service"
	// GroupDeadLetters is deadletter-service on bus.DeadLetterTopic
	// ("deadletter"), where every group's given-up messages go.
	GroupDeadLetters = "deadletter-service"
)

// Event types (ce-type).
const (
	TypeOrderCreated = "OrderCreated"
)

// Source is the ce-source of events each service publishes.
const (
	SourceOrderService = "order-service"
)

// Item is one line of an order.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// OrderCreated is published when an order is placed. It keeps the
// tutorial's shape: {"event":"OrderCreated","orderId":123,"userId":456,...}.
type OrderCreated struct {
	Event     string    `json:"event"`
	OrderID   int64     `json:"orderId"`
	UserID    int64     `json:"userId"`
	Items     []Item    `json:"items"`
	CreatedAt time.Time `json:"createdAt"`
}
