// Package shipping is shipping-service's domain: booking a shipment for an
// order, cancelling it, and dispatching it once the order is confirmed.
package shipping

import (
	"context"
	"fmt"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// State is where a shipment is.
type State string

// States.
const (
	Scheduled  State = "scheduled"  // booked; the order is not confirmed yet
	Ready      State = "ready"      // the order is confirmed; leaves at DispatchAt
	Dispatched State = "dispatched" // on its way
	Cancelled  State = "cancelled"  // cancelled (or a cancel came first)
	Refused    State = "refused"    // no courier would take it
)

// Shipment is an order's shipment.
type Shipment struct {
	OrderID      int64
	UserID       int64
	State        State
	Reason       string
	TrackingCode string
	DispatchAt   time.Time // zero until the order is confirmed
	DispatchedAt time.Time
	UpdatedAt    time.Time
}

// Store reads shipments. Get of a missing one is fault.NotFound.
type Store interface {
	Get(ctx context.Context, orderID int64) (Shipment, error)
}

// Service is shipping-service's read side. It is safe for concurrent use.
type Service struct{ store Store }

// NewService returns the service over store.
func NewService(store Store) *Service { return &Service{store: store} }

// Get returns the shipment of an order the caller owns (administrators see
// every one); anyone else gets fault.NotFound.
func (s *Service) Get(ctx context.Context, caller auth.Principal, orderID int64) (Shipment, error) {
	if orderID < 1 {
		return Shipment{}, fault.New(fault.Invalid, "order id must be a positive integer")
	}
	sh, err := s.store.Get(ctx, orderID)
	if err != nil {
		return Shipment{}, err
	}
	if sh.UserID != caller.UserID && !caller.IsAdmin() {
		return Shipment{}, fault.New(fault.NotFound, "no shipment for order %d", orderID)
	}
	return sh, nil
}

// Config is shipping-service's own settings.
type Config struct {
	// DispatchDelay is how long after confirmation a shipment leaves.
	DispatchDelay time.Duration
	// RefuseRate is the share of bookings refused ("no courier"), chosen
	// by order id and Seed so a retry gets the same answer (fault tests).
	RefuseRate float64
	Seed       uint64
}

// DefaultConfig is a shop that dispatches two seconds after confirmation
// and refuses nothing.
var DefaultConfig = Config{DispatchDelay: 2 * time.Second}

// Validate reports the first setting c cannot use; the error begins with
// the setting's name (dispatch-delay, shipping-refuse-rate).
func (c Config) Validate() error {
	if c.DispatchDelay < 0 {
		return fmt.Errorf("dispatch-delay %v: must not be negative", c.DispatchDelay)
	}
	if c.RefuseRate < 0 || c.RefuseRate > 1 {
		return fmt.Errorf("shipping-refuse-rate %v: must be between 0 and 1", c.RefuseRate)
	}
	return nil
}

// String prints c for the start-up log.
func (c Config) String() string {
	return fmt.Sprintf("dispatch_delay=%v refuse_rate=%v", c.DispatchDelay, c.RefuseRate)
}
