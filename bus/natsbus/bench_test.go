package natsbus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
)

var body = []byte(`{"event":"OrderCreated","orderId":123,"userId":456}`)

// benchEnv is an embedded server with a raw JetStream client and a bus, on
// separate connections.
func benchEnv(b *testing.B) (jetstream.JetStream, *natsbus.Bus) {
	ns := natstest.Start(b, b.TempDir())
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	bb, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bb.Close() })
	return js, bb
}

func rawStream(b *testing.B, js jetstream.JetStream, topic string) jetstream.Stream {
	s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func rawMsg(topic string, i int) *nats.Msg {
	m := nats.NewMsg(topic)
	m.Header.Set(jetstream.MsgIDHeader, "m-"+strconv.Itoa(i))
	m.Header.Set("ce-type", "OrderCreated")
	m.Data = body
	return m
}

func busMsg(i int) *bus.Message {
	return &bus.Message{ID: "m-" + strconv.Itoa(i), Type: "OrderCreated", Key: strconv.Itoa(i % 64), Body: body}
}

// BenchmarkPublishSync: one message at a time, waiting for each PubAck: the
// raw jetstream client next to the bus, in the same run.
func BenchmarkPublishSync(b *testing.B) {
	js, bb := benchEnv(b)
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		rawStream(b, js, "rawsync")
		i := 0
		for b.Loop() {
			if _, err := js.PublishMsg(ctx, rawMsg("rawsync", i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if err := bb.Publish(ctx, "bussync", busMsg(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkPublishBatch: 100 messages sent asynchronously, then every ack
// awaited.
func BenchmarkPublishBatch(b *testing.B) {
	js, bb := benchEnv(b)
	ctx := context.Background()
	const batch = 100
	b.Run("raw", func(b *testing.B) {
		rawStream(b, js, "rawbatch")
		i := 0
		for b.Loop() {
			fs := make([]jetstream.PubAckFuture, 0, batch)
			for range batch {
				f, err := js.PublishMsgAsync(rawMsg("rawbatch", i))
				if err != nil {
					b.Fatal(err)
				}
				fs = append(fs, f)
				i++
			}
			for _, f := range fs {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		i := 0
		for b.Loop() {
			ms := make([]*bus.Message, 0, batch)
			for range batch {
				ms = append(ms, busMsg(i))
				i++
			}
			if err := bb.Publish(ctx, "busbatch", ms...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkConsume: messages already in the stream, consumed with explicit
// acks by a raw pull consumer and by a bus subscription.
func BenchmarkConsume(b *testing.B) {
	js, bb := benchEnv(b)
	ctx := context.Background()
	fill := func(b *testing.B, topic string) {
		for i := 0; i < b.N; i += 100 {
			ms := make([]*bus.Message, 0, 100)
			for j := i; j < min(i+100, b.N); j++ {
				ms = append(ms, busMsg(j))
			}
			if err := bb.Publish(ctx, topic, ms...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw", func(b *testing.B) {
		topic := "rawconsume" + strconv.Itoa(b.N)
		fill(b, topic)
		s, _ := js.Stream(ctx, natsbus.StreamName(topic))
		c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		it, err := c.Messages(jetstream.PullMaxMessages(16))
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
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		topic := "busconsume" + strconv.Itoa(b.N)
		fill(b, topic)
		var n atomic.Int64
		done := make(chan struct{})
		b.ResetTimer()
		sub, err := bb.Subscribe(ctx, topic, "bus", func(context.Context, *bus.Message) error {
			if n.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		<-done
		b.StopTimer()
		_ = sub.Close()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
