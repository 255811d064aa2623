package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
)

// The raw nats.go JetStream client and natsbus doing the same work against
// an embedded server in the same run:
//
//	go test ./bus/natsbus -run '^$' -bench . -benchtime 20000x
func benchEnv(b *testing.B) (jetstream.JetStream, *natsbus.Bus) {
	ns := natstest.Start(b, b.TempDir())
	_, js := operate(b, ns.ClientURL())
	bb, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bb.Close() })
	return js, bb
}

func rawStream(b *testing.B, js jetstream.JetStream, topic string) {
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
}

func rawMsg(topic string, i int) *nats.Msg {
	m := bustest.BenchMessage(i)
	nm := nats.NewMsg(topic)
	for k, v := range bus.ToHeaders(m) {
		nm.Header.Set(k, v)
	}
	nm.Header.Set(jetstream.MsgIDHeader, m.ID)
	nm.Data = m.Body
	return nm
}

func benchPublish(b *testing.B, batch int) {
	js, bb := benchEnv(b)
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		topic := "raw" + bus.NewID()[:8]
		rawStream(b, js, topic)
		lat := bustest.NewLatency()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			err := lat.Time(func() error {
				if batch == 1 {
					_, err := js.PublishMsg(ctx, rawMsg(topic, i))
					return err
				}
				fs := make([]jetstream.PubAckFuture, 0, batch)
				for j := i; j < min(i+batch, b.N); j++ {
					f, err := js.PublishMsgAsync(rawMsg(topic, j))
					if err != nil {
						return err
					}
					fs = append(fs, f)
				}
				for _, f := range fs {
					select {
					case <-f.Ok():
					case err := <-f.Err():
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
	b.Run("bus", func(b *testing.B) { bustest.BenchPublish(b, bb, "bus"+bus.NewID()[:8], batch) })
}

// BenchmarkPublishSync: one message at a time, waiting for each PubAck.
func BenchmarkPublishSync(b *testing.B) { benchPublish(b, 1) }

// BenchmarkPublishBatch: 100 messages sent asynchronously, then every ack
// awaited.
func BenchmarkPublishBatch(b *testing.B) { benchPublish(b, 100) }

// BenchmarkConsume: messages already in the stream, consumed with explicit
// acks by a raw pull consumer and by a bus subscription.
func BenchmarkConsume(b *testing.B) {
	js, bb := benchEnv(b)
	ctx := context.Background()
	fill := func(b *testing.B, topic string) {
		for i := 0; i < b.N; i += 100 {
			ms := make([]*bus.Message, 0, 100)
			for j := i; j < min(i+100, b.N); j++ {
				ms = append(ms, bustest.BenchMessage(j))
			}
			if err := bb.Publish(ctx, topic, ms...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw", func(b *testing.B) {
		topic := "rawc" + bus.NewID()[:8]
		fill(b, topic)
		s, _ := js.Stream(ctx, natsbus.StreamName(topic))
		c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		it, err := c.Messages(jetstream.PullMaxMessages(128)) // the bus's prefetch
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			m, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			_ = m.Ack()
		}
		it.Stop()
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		topic := "busc" + bus.NewID()[:8]
		fill(b, topic)
		bustest.BenchConsume(b, bb, topic, "bus")
	})
}
