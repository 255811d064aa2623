package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/membus"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/sqlite" // registers the SQLite driver
)

// A state change and the event it causes commit together (no dual
// write); the relay publishes what committed; the consumer applies each
// message once, however often it is delivered.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer os.RemoveAll(dir)
	db, err := sqldb.Open(ctx, filepath.Join(dir, "orders.db")) // or a postgres:// URL
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
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)`); err != nil {
		fmt.Println(err)
		return
	}

	// The producer: the order and its event, in one transaction.
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, status) VALUES (7, 'pending')`); err != nil {
			return err
		}
		return ob.Add(ctx, tx, "orders", &bus.Message{
			ID: "order-7-created", Type: "OrderCreated", Source: "order-service", Time: time.Now(), Key: "7",
			Body: []byte(`{"event":"OrderCreated","orderId":7}`),
		})
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ob.Notify() // after the commit: wake this process's relay now rather than at its next poll

	// The consumer: its effect and the message id, in one transaction.
	b := membus.New()
	defer b.Close()
	applied := 0
	mailer := outbox.Idempotent(db, "mailer", func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
		applied++
		return nil
	})
	got := make(chan *bus.Message, 1)
	_, _ = b.Subscribe(ctx, "orders", "mailer", func(ctx context.Context, m *bus.Message) error {
		err := mailer(ctx, m)
		got <- m
		return err
	})

	// The relay (Run in production; one round here).
	relay := outbox.NewRelay(ob, b, outbox.RelayConfig{Holder: "order-service-1"}, slog.New(slog.DiscardHandler))
	n, err := relay.Once(ctx)
	fmt.Println("published", n, err)
	m := <-got
	_ = mailer(ctx, m) // the same message delivered again: no second effect
	fmt.Println("applied", applied, "time(s)")
	// Output:
	// published 1 <nil>
	// applied 1 time(s)
}
