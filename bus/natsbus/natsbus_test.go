package natsbus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
)

func TestContract(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	bustest.Run(t, bustest.Setup{
		Features:        bustest.Features{PublishDedupe: true, SharesWork: true, Replay: true},
		InProcessBroker: []string{"github.com/nats-io/nats-server/v2/"},
		New: func(t *testing.T) (bus.Publisher, bus.Subscriber) {
			pub, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "bustest-pub"})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "bustest-sub", AckWait: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return pub, sub
		},
		Wire: &bustest.Wire{Binding: bus.BindingNATS, Listen: func(t *testing.T, topic string) func() map[string]string {
			nc, err := nats.Connect(ns.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			raw, err := nc.SubscribeSync(topic)
			if err != nil {
				t.Fatal(err)
			}
			// The server has the subscription once a round trip after it
			// came back; a publish before that would pass it by.
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			return func() map[string]string {
				m, err := raw.NextMsg(10 * time.Second)
				if err != nil {
					t.Fatalf("read %s with nats.go: %v", topic, err)
				}
				h := map[string]string{}
				for k, vs := range m.Header {
					h[k] = vs[0]
				}
				return h
			}
		}},
	})
}

// TestCheckFollowsTheBroker: Check passes while the server answers and
// fails once it is gone.
func TestCheckFollowsTheBroker(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	b, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "check"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Check(context.Background()); err != nil {
		t.Fatalf("Check with the broker up (a context without deadline) = %v", err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := b.Check(ctx2); err == nil {
		t.Error("Check with the broker gone succeeded")
	}
}

// TestASubscriptionOutlivesItsConsumer: when the server ends a
// subscription's pull by itself (here its durable consumer is deleted, as
// a stream's recreation or a cluster's loss of it would), the
// subscription says so, makes the consumer again and goes on; it does not
// end silently.
func TestASubscriptionOutlivesItsConsumer(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	resumed := make(chan string, 16)
	b, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "resume", OnResume: func(topic, group string, why error) {
		resumed <- topic + "/" + group + ": " + why.Error()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	got := make(chan string, 16)
	sub, err := b.Subscribe(ctx, "resume-topic", "resume-group", func(_ context.Context, m *bus.Message) error {
		got <- m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publish := func(id string) {
		t.Helper()
		if err := b.Publish(ctx, "resume-topic", &bus.Message{ID: id, Type: "T", Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	// wait for id; the consumer made again starts from the stream's
	// first message, so what came before may come again (at least once).
	wait := func(id string, before ...string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case g := <-got:
				if g == id {
					return
				}
				if !slices.Contains(before, g) {
					t.Fatalf("handled %s, want %s", g, id)
				}
			case <-deadline:
				t.Fatalf("%s was not handled within 10 s", id)
			}
		}
	}
	publish("m1")
	wait("m1")

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, natsbus.StreamName("resume-topic"), natsbus.StreamName("resume-group")); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-resumed:
		t.Logf("resumed: %s", why)
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription did not notice its consumer was deleted")
	}
	publish("m2")
	wait("m2", "m1")
}
