package kafkabus_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

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
		Wire: &bustest.Wire{Binding: bus.BindingKafka, Listen: func(t *testing.T, topic string) func() map[string]string {
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			return func() map[string]string {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for {
					fs := cl.PollFetches(ctx)
					if ctx.Err() != nil {
						t.Fatalf("read %s with franz-go: %v", topic, ctx.Err())
					}
					if recs := fs.Records(); len(recs) > 0 {
						h := map[string]string{}
						for _, x := range recs[0].Headers {
							h[x.Key] = string(x.Value)
						}
						return h
					}
				}
			}
		}},
	})
}
