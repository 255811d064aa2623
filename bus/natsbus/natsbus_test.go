package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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
