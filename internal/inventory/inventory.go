// Package inventory is inventory-service's domain: the product catalogue and
// stock levels.
package inventory

import (
	"context"
	"fmt"
	"regexp"

	"github.com/junction-go/junction/fault"
)

// Product is a thing the shop sells.
type Product struct {
	SKU         string
	Name        string
	Description string
	// Price is in the currency's minor unit (cents).
	Price    int64
	Currency string
	// Stock is the number of units on hand.
	Stock int64
}

// Store keeps products. A missing product is fault.NotFound.
type Store interface {
	Products(ctx context.Context) ([]Product, error)
	Product(ctx context.Context, sku string) (Product, error)
	// AddProducts adds the products whose SKU is not there yet and returns
	// how many it added.
	AddProducts(ctx context.Context, ps []Product) (int, error)
}

// Service is inventory-service's use cases. It is safe for concurrent use.
type Service struct{ store Store }

// NewService returns the service over store.
func NewService(store Store) *Service { return &Service{store: store} }

// SKUPattern is what a SKU looks like.
var SKUPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// Products returns the catalogue, ordered by SKU.
func (s *Service) Products(ctx context.Context) ([]Product, error) {
	ps, err := s.store.Products(ctx)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return ps, nil
}

// Product returns one product; a malformed SKU is fault.Invalid.
func (s *Service) Product(ctx context.Context, sku string) (Product, error) {
	if !SKUPattern.MatchString(sku) {
		return Product{}, fault.New(fault.Invalid, "a SKU is 1 to 64 upper-case letters, digits or '-'")
	}
	return s.store.Product(ctx, sku)
}

// Seed adds the products of ps that are not in the catalogue yet.
func (s *Service) Seed(ctx context.Context, ps []Product) (int, error) {
	for _, p := range ps {
		if !SKUPattern.MatchString(p.SKU) || p.Price < 0 || p.Stock < 0 || p.Name == "" {
			return 0, fault.New(fault.Invalid, "product %q is malformed", p.SKU)
		}
	}
	return s.store.AddProducts(ctx, ps)
}

// DemoCatalogue is the small catalogue `junction up` starts with.
func DemoCatalogue() []Product {
	return []Product{
		{SKU: "JX-MUG", Name: "Junction mug", Description: "Stoneware, 350 ml.", Price: 1200, Currency: "EUR", Stock: 100},
		{SKU: "JX-TEE-M", Name: "Junction T-shirt (M)", Description: "Organic cotton.", Price: 2500, Currency: "EUR", Stock: 40},
		{SKU: "JX-TEE-L", Name: "Junction T-shirt (L)", Description: "Organic cotton.", Price: 2500, Currency: "EUR", Stock: 40},
		{SKU: "JX-STICKERS", Name: "Sticker pack", Description: "Twelve vinyl stickers.", Price: 500, Currency: "EUR", Stock: 500},
		{SKU: "JX-HOODIE", Name: "Junction hoodie", Description: "Heavyweight, with the logo.", Price: 5900, Currency: "EUR", Stock: 15},
		{SKU: "JX-LAST-ONE", Name: "Signed poster", Description: "Only one was ever made.", Price: 9900, Currency: "EUR", Stock: 1},
		// Enough for `junction bench orders` to run for hours.
		{SKU: "JX-PIN", Name: "Enamel pin", Description: "The logo, 25 mm.", Price: 300, Currency: "EUR", Stock: 10_000_000},
	}
}

// Line is a quantity of one SKU.
type Line struct {
	SKU      string
	Quantity int64
}

// ReservationState is where an order's reservation is.
type ReservationState string

// Reservation states.
const (
	// Reserved: the stock is held for the order.
	Reserved ReservationState = "reserved"
	// Rejected: there was not enough stock; nothing is held.
	Rejected ReservationState = "rejected"
	// Released: the stock went back on the shelf (or a release came
	// before any reservation, which then holds nothing).
	Released ReservationState = "released"
	// Committed: the order was confirmed; the stock has left for good.
	Committed ReservationState = "committed"
)

// Reservation is the stock held for one order.
type Reservation struct {
	OrderID int64
	State   ReservationState
	// Total is what the lines cost, in minor units of Currency.
	Total    int64
	Currency string
	// Reason says why it was rejected.
	Reason string
}

// Shortage is a line that cannot be served now.
type Shortage struct {
	SKU                  string
	Requested, Available int64
	Unknown              bool
}

// Availability answers whether lines could be served now; it holds
// nothing.
func (s *Service) Availability(ctx context.Context, lines []Line) ([]Shortage, error) {
	if len(lines) == 0 || len(lines) > 100 {
		return nil, fault.New(fault.Invalid, "ask for 1 to 100 lines")
	}
	var short []Shortage
	for _, l := range lines {
		if !SKUPattern.MatchString(l.SKU) || l.Quantity < 1 {
			return nil, fault.New(fault.Invalid, "line %q: a SKU and a positive quantity", l.SKU)
		}
		p, err := s.store.Product(ctx, l.SKU)
		switch {
		case fault.Is(err, fault.NotFound):
			short = append(short, Shortage{SKU: l.SKU, Requested: l.Quantity, Unknown: true})
		case err != nil:
			return nil, fmt.Errorf("availability: %w", err)
		case p.Stock < l.Quantity:
			short = append(short, Shortage{SKU: l.SKU, Requested: l.Quantity, Available: p.Stock})
		}
	}
	return short, nil
}
