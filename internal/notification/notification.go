// Package notification is notification-service's domain: what a customer
// is told, and when, about their orders. It listens to order events and
// keeps a log of the notifications it sent.
package notification

import (
	"context"
	"fmt"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// Notification is one message to a customer.
type Notification struct {
	ID        int64
	UserID    int64
	OrderID   int64
	Event     string // the event type that caused it
	EventID   string // the id of that event
	Text      string
	CreatedAt time.Time
}

// Store reads the notification log.
type Store interface {
	// List returns up to limit notifications of userID, newest first.
	List(ctx context.Context, userID int64, limit int) ([]Notification, error)
}

// Service is notification-service's use cases. It is safe for concurrent
// use.
type Service struct{ store Store }

// NewService returns the service over store.
func NewService(store Store) *Service { return &Service{store: store} }

// List returns the caller's own notifications, newest first.
func (s *Service) List(ctx context.Context, caller auth.Principal, limit int) ([]Notification, error) {
	if limit < 1 || limit > 100 {
		return nil, fault.New(fault.Invalid, "limit must be between 1 and 100")
	}
	return s.store.List(ctx, caller.UserID, limit)
}

// ForOrderCreated is the notification an OrderCreated event causes.
func ForOrderCreated(eventID string, e events.OrderCreated, now time.Time) (Notification, error) {
	if e.OrderID < 1 || e.UserID < 1 {
		return Notification{}, fault.New(fault.Invalid, "OrderCreated without an order or user id")
	}
	units := 0
	for _, it := range e.Items {
		units += it.Quantity
	}
	return Notification{
		UserID: e.UserID, OrderID: e.OrderID, Event: events.TypeOrderCreated, EventID: eventID,
		Text:      fmt.Sprintf("We received your order %d (%d items). We will tell you when it is confirmed.", e.OrderID, units),
		CreatedAt: now,
	}, nil
}

// ForStatusChange returns the notification of an order's status change
// (OrderConfirmed, OrderRejected, OrderShipped, OrderCancelled).
func ForStatusChange(eventID string, e events.OrderStatusChanged, now time.Time) (Notification, error) {
	if e.OrderID < 1 || e.UserID < 1 {
		return Notification{}, fault.New(fault.Invalid, "%s without an order or user id", e.Event)
	}
	var text string
	switch e.Event {
	case events.TypeOrderConfirmed:
		text = fmt.Sprintf("Your order %d is confirmed and paid. It will leave the warehouse shortly.", e.OrderID)
	case events.TypeOrderShipped:
		text = fmt.Sprintf("Your order %d is on its way.", e.OrderID)
	case events.TypeOrderCancelled:
		text = fmt.Sprintf("Your order %d is cancelled; any payment was returned.", e.OrderID)
	case events.TypeOrderRejected:
		text = fmt.Sprintf("We could not complete your order %d: %s. Nothing was charged.", e.OrderID, e.Reason)
	default:
		return Notification{}, fault.New(fault.Invalid, "no notification for %s", e.Event)
	}
	return Notification{UserID: e.UserID, OrderID: e.OrderID, Event: e.Event, EventID: eventID, Text: text, CreatedAt: now}, nil
}

// ForShipmentDispatched returns the notification of a dispatched parcel.
func ForShipmentDispatched(eventID string, e events.ShipmentDispatched, now time.Time) (Notification, error) {
	if e.OrderID < 1 || e.UserID < 1 {
		return Notification{}, fault.New(fault.Invalid, "ShipmentDispatched without an order or user id")
	}
	return Notification{UserID: e.UserID, OrderID: e.OrderID, Event: e.Event, EventID: eventID,
		Text: fmt.Sprintf("Your parcel for order %d left the warehouse; tracking code %s.", e.OrderID, e.TrackingCode), CreatedAt: now}, nil
}
