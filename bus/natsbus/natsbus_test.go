package natsbus_test

import (
	"testing"
	"time"

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
	})
}
