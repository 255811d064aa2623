package msg

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/internal/shipping/store"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// cmd is a saga command as the order saga sends it.
func cmd(typ, body string) *bus.Message {
	return &bus.Message{ID: bus.NewID(), Type: typ, Source: "order-service", Key: "7", Body: []byte(body), Headers: map[string]string{
		saga.HeaderSagaID: "7", saga.HeaderStep: "schedule-shipment", saga.HeaderKey: "place-order/7/schedule-shipment/do", bus.HeaderReplyTo: events.TopicOrderReplies,
	}}
}

// TestHandlers drives shipping's handlers as the broker would, each in a
// transaction, and reads what they stored and answered.
func TestHandlers(t *testing.T) {
	ctx := context.Background()
	st, err := store.New(ctx, sqldbtest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DispatchDelay: time.Hour}
	handle := func(h func(context.Context, *sql.Tx, *bus.Message) error, m *bus.Message) error {
		return st.Outbox().InTx(ctx, func(tx *sql.Tx) error { return h(ctx, tx, m) })
	}
	state := func() shipping.State {
		sh, err := st.Get(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		return sh.State
	}
	if err := handle(command(st, cfg), cmd(events.CmdScheduleShipment, `{"orderId":7,"userId":1,"items":[{"sku":"JX-MUG","quantity":1}]}`)); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != shipping.Scheduled {
		t.Errorf("after ScheduleShipment: %s, want scheduled", s)
	}
	confirmed := &bus.Message{ID: "c7", Type: events.TypeOrderConfirmed, Source: "order-service", Key: "7"}
	if err := handle(orderEvent(st, cfg), confirmed); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != shipping.Ready {
		t.Errorf("after OrderConfirmed: %s, want ready", s)
	}
	if err := handle(orderEvent(st, cfg), &bus.Message{ID: "x", Type: events.TypeOrderConfirmed, Source: "order-service", Key: "seven"}); !bus.IsPermanent(err) {
		t.Errorf("OrderConfirmed with a key that is no order id = %v, want a permanent failure", err)
	}
	if err := handle(command(st, cfg), cmd(events.CmdCancelShipment, `{"orderId":7}`)); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != shipping.Cancelled {
		t.Errorf("after CancelShipment: %s, want cancelled", s)
	}
	for _, bad := range []*bus.Message{cmd(events.CmdScheduleShipment, `{"orderId":0}`), cmd("ShipEverything", `{"orderId":7}`), cmd(events.CmdCancelShipment, `nope`)} {
		if err := handle(command(st, cfg), bad); !bus.IsPermanent(err) {
			t.Errorf("%s %s = %v, want a permanent failure", bad.Type, bad.Body, err)
		}
	}
	// Every command was answered: the replies wait in the outbox.
	b, err := st.Outbox().Backlog(ctx)
	if err != nil || b.Unsent != 2 {
		t.Errorf("replies in the outbox = %+v %v, want 2", b, err)
	}
}
