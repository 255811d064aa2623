// Package ordertest assembles order-service over a real database for tests,
// the way cmd's wiring does: the outbox, the saga engine with the order's
// sagas (ending in the store's transactions), the store and the service.
package ordertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/store"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
)

// Parts are what New assembled.
type Parts struct {
	Service *order.Service
	Store   *store.Store
	Engine  *saga.Engine
	Waiters *order.Waiters
	// Admission bounds the orders in flight, as in order-service.
	Admission *order.Admission
}

// New assembles order-service over db with users and stock (nil for no
// availability check), and clock (time.Now when nil).
func New(t testing.TB, db *sqldb.DB, users order.Users, stock order.Stock, clock func() time.Time) Parts {
	t.Helper()
	ctx := context.Background()
	ob, err := outbox.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	waiters, admission := order.NewWaiters(), order.NewAdmission()
	place, cancel := order.PlaceOrderSaga(), order.CancelOrderSaga()
	place.OnEnd, cancel.OnEnd = store.Ended(db, ob, order.PlaceEnded), store.Ended(db, ob, order.CancelEnded)
	engine, err := saga.New(ctx, db, ob, saga.Config{ReplyTopic: events.TopicOrderReplies, Source: events.SourceOrderService, Ended: func(in *saga.Instance) { waiters.Ended(in); admission.Ended(in) }, Journal: store.Journal(db, ob)},
		slog.New(slog.DiscardHandler), place, cancel)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(ctx, db, ob, engine)
	if err != nil {
		t.Fatal(err)
	}
	svc := order.NewService(st, waiters, users, stock, clock)
	svc.Admit(admission)
	return Parts{Service: svc, Store: st, Engine: engine, Waiters: waiters, Admission: admission}
}
