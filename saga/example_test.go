package saga_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/membus"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/sqlite" // registers the SQLite driver
)

// An orchestrated saga in plain Go: reserve stock, then charge the card;
// the card is declined, so the reservation is released and the saga ends
// compensated. Commands leave through the owner's outbox; participants
// answer with Command.Reply.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "saga-example-")
	defer os.RemoveAll(dir)
	db, err := sqldb.Open(ctx, filepath.Join(dir, "orders.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	ob, err := outbox.New(ctx, db)
	if err != nil {
		fmt.Println(err)
		return
	}
	quiet := slog.New(slog.DiscardHandler)
	placeOrder := &saga.Definition{
		Name: "place-order",
		Steps: []saga.Step{
			{Name: "reserve", Do: saga.Action{Topic: "inventory", Type: "ReserveStock"}, Undo: &saga.Action{Topic: "inventory", Type: "ReleaseStock"}, Timeout: 5 * time.Second},
			{Name: "charge", Do: saga.Action{Topic: "payments", Type: "ChargeCard"}, Timeout: 5 * time.Second},
		},
	}
	ended := make(chan struct{}) // the one saga of this example has ended
	engine, err := saga.New(ctx, db, ob, saga.Config{ReplyTopic: "replies", Source: "order-service", Ended: func(*saga.Instance) { close(ended) }}, quiet, placeOrder)
	if err != nil {
		fmt.Println(err)
		return
	}

	b := membus.New()
	defer b.Close()
	// Participants: inventory says yes to everything, payments declines.
	participant := func(ok bool, reason string) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			c, err := saga.ParseCommand(m)
			if err != nil {
				return err
			}
			reply, err := c.Reply(ok, reason, nil)
			if err != nil {
				return err
			}
			reply.Source = "participant"
			return b.Publish(ctx, c.ReplyTo, reply)
		}
	}
	_, _ = b.Subscribe(ctx, "inventory", "inventory-service", participant(true, ""))
	_, _ = b.Subscribe(ctx, "payments", "payment-service", participant(false, "card declined"))
	_, _ = b.Subscribe(ctx, "replies", "order-service", engine.HandleReply)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = outbox.NewRelay(ob, b, outbox.RelayConfig{Holder: "order-service-1", Poll: 10 * time.Millisecond}, quiet).Run(ctx)
	}()
	defer func() { cancel(); <-relayDone }()

	err = db.InTx(ctx, func(tx *sql.Tx) error {
		return engine.Start(ctx, tx, "place-order", "7", map[string]int{"orderId": 7})
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		fmt.Println("not ended")
		return
	}
	in, err := engine.Get(ctx, "7")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(in.Status, "-", in.Reason)
	for _, ev := range in.History {
		fmt.Println("  " + strings.TrimSpace(ev.Step+" "+string(ev.Kind)))
	}
	// Output:
	// compensated - card declined
	//   started
	//   reserve sent
	//   reserve succeeded
	//   charge sent
	//   charge failed
	//   reserve undo_sent
	//   reserve undone
	//   compensated
}
