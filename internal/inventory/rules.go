package inventory

import (
	"context"
	"fmt"
)

// The rules of an order's reservation, as plain functions over values; the
// store keeps what they return and takes stock atomically (a line is taken
// only if that much is on hand, so stock never goes below zero).
//
//	command   reservation before      then                                   answer
//	reserve   none                    reserved (every line taken) or          the total, or the rejection's reason
//	                                  rejected (none taken: a line short)
//	reserve   any                     unchanged (a repeat, or a release came first) its first answer again
//	release   none                    released ("released before it was reserved": a late reserve holds nothing)
//	release   reserved or committed   released, its stock back on the shelf
//	release   rejected or released    unchanged
//	commit    reserved                committed (the order is confirmed; the stock has left)
//	commit    any other               unchanged

// ReservedAt is the reservation of every line of an order at prices, the
// products of those lines by SKU.
func ReservedAt(orderID int64, lines []Line, prices map[string]Product) Reservation {
	r := Reservation{OrderID: orderID, State: Reserved}
	for _, l := range lines {
		p := prices[l.SKU]
		r.Total += p.Price * l.Quantity
		r.Currency = p.Currency
	}
	return r
}

// RejectedFor is the reservation of an order one of whose lines could not
// be taken: short is that line, p its product (found false when the shop
// does not sell it).
func RejectedFor(orderID int64, short Line, p Product, found bool) Reservation {
	reason := fmt.Sprintf("%s is not sold here", short.SKU)
	if found {
		reason = fmt.Sprintf("out of stock: %s (%d left, %d wanted)", short.SKU, p.Stock, short.Quantity)
	}
	return Reservation{OrderID: orderID, State: Rejected, Reason: reason}
}

// Release gives back the reservation of orderID; prev is the one recorded
// (exists false when none). restock says whether its stock goes back on
// the shelf.
func Release(prev Reservation, exists bool, orderID int64) (next Reservation, changed, restock bool) {
	switch {
	case !exists:
		return Reservation{OrderID: orderID, State: Released, Reason: "released before it was reserved"}, true, false
	case prev.State == Reserved || prev.State == Committed:
		prev.State = Released
		return prev, true, true
	}
	return prev, false, false
}

// Commit marks a reserved order's stock as gone for good.
func Commit(prev Reservation, exists bool) (next Reservation, changed bool) {
	if !exists || prev.State != Reserved {
		return prev, false
	}
	prev.State = Committed
	return prev, true
}

// Reservations is the stock of one transaction: what Reserve, ReleaseOf
// and CommitOf need of the store, all within the caller's transaction
// (the store's In).
type Reservations interface {
	// Load returns the order's reservation and whether there is one.
	Load(ctx context.Context, orderID int64) (Reservation, bool, error)
	// Save writes a reservation, new or over its order's, with the lines
	// a new one holds (nil when it holds none, or for one it replaces).
	Save(ctx context.Context, r Reservation, held []Line) error
	// Take takes every line off the shelf, all or none, returning the
	// products taken by SKU, or the short line with its product (found
	// false when it is not sold).
	Take(ctx context.Context, lines []Line) (taken map[string]Product, short *Line, p Product, found bool, err error)
	// Restock puts the order's reserved stock back on the shelf.
	Restock(ctx context.Context, orderID int64) error
}

// Reserve answers ReserveStock for orderID: its first answer again if it
// was reserved (or released) before, else every line taken or none.
func Reserve(ctx context.Context, rs Reservations, orderID int64, lines []Line) (Reservation, error) {
	prev, exists, err := rs.Load(ctx, orderID)
	if err != nil || exists {
		return prev, err
	}
	taken, short, p, found, err := rs.Take(ctx, lines)
	if err != nil {
		return Reservation{}, err
	}
	if short != nil {
		r := RejectedFor(orderID, *short, p, found)
		return r, rs.Save(ctx, r, nil)
	}
	r := ReservedAt(orderID, lines, taken)
	return r, rs.Save(ctx, r, lines)
}

// ReleaseOf releases orderID's reservation (see Release) and returns it.
func ReleaseOf(ctx context.Context, rs Reservations, orderID int64) (Reservation, error) {
	prev, exists, err := rs.Load(ctx, orderID)
	if err != nil {
		return prev, err
	}
	r, changed, restock := Release(prev, exists, orderID)
	if !changed {
		return r, nil
	}
	if restock {
		if err := rs.Restock(ctx, orderID); err != nil {
			return r, err
		}
	}
	return r, rs.Save(ctx, r, nil)
}

// CommitOf commits orderID's reservation (see Commit).
func CommitOf(ctx context.Context, rs Reservations, orderID int64) error {
	prev, exists, err := rs.Load(ctx, orderID)
	if err != nil {
		return err
	}
	if r, changed := Commit(prev, exists); changed {
		return rs.Save(ctx, r, nil)
	}
	return nil
}
