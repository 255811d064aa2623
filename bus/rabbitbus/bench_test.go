package rabbitbus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/rabbitbus"
)

// The raw amqp091-go client and rabbitbus doing the same work against the
// machine's RabbitMQ in the same run (confirms on, persistent messages,
// quorum queues):
//
//	go test ./bus/rabbitbus -run '^$' -bench . -benchtime 5000x
func benchEnv(b *testing.B) (*rabbitbus.Bus, *amqp.Channel, string) {
	u := "amqp://guest:guest@127.0.0.1:5672/"
	rb, err := rabbitbus.Connect(rabbitbus.Config{URL: u, QueueExpiry: time.Minute})
	if err != nil {
		b.Skipf("no RabbitMQ: %v", err)
	}
	b.Cleanup(func() { rb.Close() })
	conn, err := amqp.Dial(u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	return rb, ch, u
}

// rawTopology declares what rabbitbus declares for (topic, group).
func rawTopology(b *testing.B, ch *amqp.Channel, topic, queue string) {
	if err := ch.ExchangeDeclare(topic, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-expires": int64(60000)}); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(queue, "", topic, false, nil); err != nil {
		b.Fatal(err)
	}
}

func rawPublishing(i int) amqp.Publishing {
	m := bustest.BenchMessage(i)
	h := amqp.Table{}
	for k, v := range bus.ToHeaders(m) {
		h[k] = v
	}
	return amqp.Publishing{Headers: h, MessageId: m.ID, Type: m.Type, DeliveryMode: amqp.Persistent, Body: m.Body}
}

func benchPublish(b *testing.B, batch int) {
	rb, ch, _ := benchEnv(b)
	ctx := context.Background()
	suffix := bus.NewID()[:6]
	b.Run("raw", func(b *testing.B) {
		topic := "bench-raw-" + suffix + strconv.Itoa(b.N)
		rawTopology(b, ch, topic, topic+".g")
		lat := bustest.NewLatency()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			err := lat.Time(func() error {
				dcs := make([]*amqp.DeferredConfirmation, 0, batch)
				for j := i; j < min(i+batch, b.N); j++ {
					dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topic, "", true, false, rawPublishing(j))
					if err != nil {
						return err
					}
					dcs = append(dcs, dc)
				}
				for _, dc := range dcs {
					if _, err := dc.WaitContext(ctx); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		lat.Report(b, b.N)
	})
	b.Run("bus", func(b *testing.B) {
		topic := "bench-bus-" + suffix + strconv.Itoa(b.N)
		// A group's queue must exist for messages to be routable.
		s, err := rb.Subscribe(ctx, topic, "g", noop)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
		bustest.BenchPublish(b, rb, topic, batch)
	})
}

func BenchmarkPublishSync(b *testing.B)  { benchPublish(b, 1) }
func BenchmarkPublishBatch(b *testing.B) { benchPublish(b, 100) }

func BenchmarkConsume(b *testing.B) {
	rb, ch, _ := benchEnv(b)
	ctx := context.Background()
	suffix := bus.NewID()[:6]
	fill := func(b *testing.B, topic string) {
		for i := 0; i < b.N; i += 200 {
			ms := make([]*bus.Message, 0, 200)
			for j := i; j < min(i+200, b.N); j++ {
				ms = append(ms, bustest.BenchMessage(j))
			}
			if err := rb.Publish(ctx, topic, ms...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw", func(b *testing.B) {
		topic := "bench-rawc-" + suffix + strconv.Itoa(b.N)
		queue := rabbitbus.QueueName(topic, "raw")
		rawTopology(b, ch, topic, queue)
		fill(b, topic)
		if err := ch.Qos(16, 0, false); err != nil {
			b.Fatal(err)
		}
		deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			d := <-deliveries
			_ = d.Ack(false)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		topic := "bench-busc-" + suffix + strconv.Itoa(b.N)
		s, err := rb.Subscribe(ctx, topic, "bus", noop)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close() // the queue exists; fill it, then consume
		fill(b, topic)
		bustest.BenchConsume(b, rb, topic, "bus")
	})
}

func noop(context.Context, *bus.Message) error { return nil }
