package kafkabus_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/kafkabus"
)

// TestContract runs the bus contract against franz-go's kfake, which speaks
// the Kafka protocol in this process.
func TestContract(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	bustest.Run(t, bustest.Setup{
		Features:        bustest.Features{SharesWork: true, Replay: true},
		InProcessBroker: []string{"github.com/twmb/franz-go/pkg/kfake"},
		New: func(t *testing.T) (bus.Publisher, bus.Subscriber) {
			pub, err := kafkabus.Connect(kafkabus.Config{Brokers: c.ListenAddrs(), Partitions: 3})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := kafkabus.Connect(kafkabus.Config{Brokers: c.ListenAddrs(), Partitions: 3})
			if err != nil {
				t.Fatal(err)
			}
			return pub, sub
		},
	})
}
