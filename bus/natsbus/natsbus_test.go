package natsbus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/natsbus"
)

// startServer runs an embedded NATS server with JetStream on a free port,
// stopped at the end of the test.
func startServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func TestContract(t *testing.T) {
	ns := startServer(t, t.TempDir())
	bustest.Run(t, bustest.Setup{
		Features:        bustest.Features{PublishDedupe: true, SharesWork: true},
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
