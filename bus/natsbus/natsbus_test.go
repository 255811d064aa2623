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
			nc, _ := operate(t, ns.ClientURL())
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

	_, js := operate(t, ns.ClientURL())
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

// TestAPublishWhoseAcknowledgementIsLostEnds: a message the server never
// acknowledges (here the stream is gone and a plain subscriber swallows
// the subject, as a stream leader that dies after storing a message
// would leave it) fails Publish after PublishTimeout, alone or in a
// batch, whether the caller's context has no deadline or a later one; it
// does not hold the caller (an outbox relay) for ever, nor longer than
// PublishTimeout.
func TestAPublishWhoseAcknowledgementIsLostEnds(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	b, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "lost-ack", PublishTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	msg := func(id string) *bus.Message { return &bus.Message{ID: id, Type: "T", Source: "test"} }
	if err := b.Publish(ctx, "lost-ack", msg("m0")); err != nil {
		t.Fatal(err) // the stream exists now, and the bus knows it
	}
	nc, js := operate(t, ns.ClientURL())
	if err := js.DeleteStream(ctx, natsbus.StreamName("lost-ack")); err != nil {
		t.Fatal(err)
	}
	swallowed := make(chan struct{}, 16)
	if _, err := nc.Subscribe("lost-ack", func(*nats.Msg) { swallowed <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	minute, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, batch := range [][]*bus.Message{{msg("m1")}, {msg("m2"), msg("m3")}, {msg("m4")}, {msg("m5"), msg("m6")}} {
		pctx := ctx // no deadline, then one a minute away
		if i >= 2 {
			pctx = minute
		}
		done := make(chan error, 1)
		go func() { done <- b.Publish(pctx, "lost-ack", batch...) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("Publish of %d unacknowledged messages succeeded", len(batch))
			}
			t.Logf("%d message(s): %v", len(batch), err)
		case <-time.After(30 * time.Second):
			t.Fatalf("Publish of %d unacknowledged messages (context %d) still waiting after 30 s", len(batch), i)
		}
	}
	// The server had every message and answered none.
	for i := range 6 {
		select {
		case <-swallowed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server passed on %d of the 6 messages, want 6", i)
		}
	}
}

// operate connects to the server at url as an operator would, beside the
// bus, to change what the bus relies on.
func operate(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
