package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/membus"
)

// A consumer under the stack every Junction service uses: a message it
// can handle is acknowledged; one it can never handle becomes a dead
// letter with its reason, instead of vanishing.
func Example() {
	ctx := context.Background()
	b := membus.New() // natsbus.Connect, kafkabus.Connect, … in production
	defer b.Close()

	dead := make(chan *bus.Message, 1)
	_, _ = b.Subscribe(ctx, bus.DeadLetterTopic, "operators", func(_ context.Context, m *bus.Message) error {
		dead <- m
		return nil
	})
	handled := make(chan string, 1)
	h := bus.Reliable(func(_ context.Context, m *bus.Message) error {
		if m.Type != "OrderCreated" {
			return bus.Permanent(errors.New("not an order event"))
		}
		handled <- string(m.Body)
		return nil
	}, bus.ReliableConfig{DeadLetters: b, Group: "mailer", MaxDeliveries: 5})
	if _, err := b.Subscribe(ctx, "orders", "mailer", h); err != nil {
		fmt.Println(err)
		return
	}

	for _, typ := range []string{"OrderCreated", "Gibberish"} {
		err := b.Publish(ctx, "orders", &bus.Message{
			ID: bus.NewID(), Type: typ, Source: "order-service", Time: time.Now(), Key: "7",
			Body: []byte(`{"event":"` + typ + `","orderId":7}`),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("handled:", <-handled)
	d := <-dead
	fmt.Println("dead letter:", d.Type, "-", d.Headers[bus.HeaderDLQReason])
	// Output:
	// handled: {"event":"OrderCreated","orderId":7}
	// dead letter: Gibberish - not an order event
}
