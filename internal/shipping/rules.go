package shipping

import (
	"fmt"
	"hash/fnv"
	"time"
)

// The rules of a shipment's life, as plain functions over values: the
// store only keeps what they return.
//
//	event             shipment before           after
//	schedule          none                      scheduled (refused: refused, with the reason)
//	schedule          any                       unchanged (a repeat, or a cancel came first)
//	order confirmed   scheduled                 ready, leaving at now + the dispatch delay
//	order confirmed   any other                 unchanged
//	dispatch due      ready, its time come      dispatched, with a tracking code
//	cancel            none                      cancelled ("cancelled before it was booked": a late schedule is refused)
//	cancel            scheduled or ready        cancelled
//	cancel            dispatched                unchanged: refused, "the shipment has left"
//	cancel            cancelled or refused      unchanged

// Schedule books the shipment of orderID for userID; prev is the one
// recorded (exists false when none). refuse, when not empty, is why no
// courier takes it.
func Schedule(prev Shipment, exists bool, orderID, userID int64, refuse string, now time.Time) (next Shipment, changed bool) {
	if exists {
		return prev, false
	}
	next = Shipment{OrderID: orderID, UserID: userID, State: Scheduled, UpdatedAt: now}
	if refuse != "" {
		next.State, next.Reason = Refused, refuse
	}
	return next, true
}

// Confirmed starts the dispatch clock of a scheduled shipment: it leaves
// at dispatchAt.
func Confirmed(sh Shipment, dispatchAt, now time.Time) (next Shipment, changed bool) {
	if sh.State != Scheduled {
		return sh, false
	}
	sh.State, sh.DispatchAt, sh.UpdatedAt = Ready, dispatchAt, now
	return sh, true
}

// Due reports whether sh should leave now.
func Due(sh Shipment, now time.Time) bool {
	return sh.State == Ready && !sh.DispatchAt.After(now)
}

// Dispatch sends a due shipment on its way with its tracking code.
func Dispatch(sh Shipment, now time.Time) Shipment {
	sh.State, sh.TrackingCode, sh.DispatchedAt, sh.UpdatedAt = Dispatched, TrackingCode(sh.OrderID), now, now
	return sh
}

// TrackingCode is the courier's code for an order's parcel.
func TrackingCode(orderID int64) string { return fmt.Sprintf("JX%08d", orderID) }

// Cancel cancels the shipment of orderID unless it has left; prev is the
// one recorded (exists false when none). refused says why a cancel could
// not be done ("" when it was, or when there was nothing left to do).
func Cancel(prev Shipment, exists bool, orderID int64, now time.Time) (next Shipment, changed bool, refused string) {
	switch {
	case !exists:
		return Shipment{OrderID: orderID, State: Cancelled, Reason: "cancelled before it was booked", UpdatedAt: now}, true, ""
	case prev.State == Scheduled || prev.State == Ready:
		prev.State, prev.DispatchAt, prev.UpdatedAt = Cancelled, time.Time{}, now
		return prev, true, ""
	case prev.State == Dispatched:
		return prev, false, "the shipment has left"
	}
	return prev, false, ""
}

// Refuses reports whether the simulated couriers refuse the shipment of
// orderID: a share rate of all orders, chosen by orderID and seed, so
// every attempt of one order gets the same answer.
func Refuses(orderID int64, rate float64, seed uint64) bool {
	if rate <= 0 {
		return false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", seed, orderID)
	return float64(h.Sum64()%10000)/10000 < rate
}
