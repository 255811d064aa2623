package rabbitbus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/rabbitbus"
)

// url returns the RabbitMQ to test against: JUNCTION_TEST_AMQP_URL, or the
// machine's own on 127.0.0.1:5672. Without one the test skips, or fails
// when JUNCTION_REQUIRE_ALL=1.
func url(t *testing.T) string {
	u := os.Getenv("JUNCTION_TEST_AMQP_URL")
	if u == "" {
		u = "amqp://guest:guest@127.0.0.1:5672/"
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second)
	if err == nil {
		c.Close()
		return u
	}
	if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
		t.Fatalf("RabbitMQ is required (JUNCTION_REQUIRE_ALL=1) but not reachable at 127.0.0.1:5672: %v", err)
	}
	t.Skipf("no RabbitMQ at 127.0.0.1:5672 (%v); set JUNCTION_TEST_AMQP_URL or start one", err)
	return ""
}

func TestContract(t *testing.T) {
	u := url(t)
	bustest.Run(t, bustest.Setup{
		Features: bustest.Features{SharesWork: true},
		New: func(t *testing.T) (bus.Publisher, bus.Subscriber) {
			// Test queues go away a minute after their last consumer.
			pub, err := rabbitbus.Connect(rabbitbus.Config{URL: u, QueueExpiry: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := rabbitbus.Connect(rabbitbus.Config{URL: u, QueueExpiry: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return pub, sub
		},
		Wire: &bustest.Wire{Binding: bus.BindingAMQP, Listen: func(t *testing.T, topic string) func() map[string]string {
			conn, err := amqp.Dial(u)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			// The adapter declared the exchange when the suite subscribed.
			q, err := ch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ch.QueueBind(q.Name, "", topic, false, nil); err != nil {
				t.Fatal(err)
			}
			deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			return func() map[string]string {
				select {
				case d := <-deliveries:
					h := map[string]string{"content-type": d.ContentType}
					for k, v := range d.Headers {
						h[k] = fmt.Sprint(v)
					}
					return h
				case <-time.After(10 * time.Second):
					t.Fatalf("read %s with amqp091-go: nothing within 10s", topic)
					return nil
				}
			}
		}},
	})
}

func TestUnroutableIsAnError(t *testing.T) {
	b, err := rabbitbus.Connect(rabbitbus.Config{URL: url(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Publish(context.Background(), "nobody-listens-"+bus.NewID()[:8], &bus.Message{ID: bus.NewID(), Type: "X", Source: "test"})
	if !errors.Is(err, rabbitbus.ErrUnroutable) {
		t.Errorf("publish to a topic no group subscribes to = %v, want ErrUnroutable", err)
	}
}

// TestResumesAfterTheConnectionIsLost: the broker closes every client
// connection (as on a restart or a network cut); the subscription consumes
// again on a new connection and the publisher dials again.
func TestResumesAfterTheConnectionIsLost(t *testing.T) {
	u := url(t)
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		t.Skip("rabbitmqctl is not on this machine; cannot close connections from the broker side")
	}
	b, err := rabbitbus.Connect(rabbitbus.Config{URL: u, QueueExpiry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	topic := "reconnect-" + bus.NewID()[:8]
	got := make(chan string, 16)
	sub, err := b.Subscribe(context.Background(), topic, "g", func(_ context.Context, m *bus.Message) error { got <- m.ID; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publish := func(id string) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := b.Publish(context.Background(), topic, &bus.Message{ID: id, Type: "T", Source: "test"})
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	expect := func(id string) {
		select {
		case g := <-got:
			if g != id {
				t.Fatalf("got %s, want %s", g, id)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s not delivered", id)
		}
	}
	publish("before")
	expect("before")
	if out, err := exec.Command(ctl, "close_all_connections", "test: connection lost").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl close_all_connections: %v\n%s", err, out)
	}
	publish("after")
	expect("after")
}

// TestCheckFollowsTheConnection: Check passes on an open connection and
// fails once it is closed.
func TestCheckFollowsTheConnection(t *testing.T) {
	b, err := rabbitbus.Connect(rabbitbus.Config{URL: url(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatalf("Check on a fresh connection = %v", err)
	}
	b.Close()
	if err := b.Check(context.Background()); err == nil {
		t.Error("Check after Close succeeded")
	}
}
