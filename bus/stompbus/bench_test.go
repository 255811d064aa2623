package stompbus_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/stompbus"
)

// The raw go-stomp client and stompbus doing the same work against
// ActiveMQ (scripts/activemq) in the same run:
//
//	go test ./bus/stompbus -run '^$' -bench . -benchtime 5000x
const benchAddr = "127.0.0.1:61623"

func benchEnv(b *testing.B) (*stompbus.Bus, *stomp.Conn) {
	sb, err := stompbus.Connect(stompbus.Config{Addr: benchAddr})
	if err != nil {
		b.Skipf("no ActiveMQ: %v", err)
	}
	b.Cleanup(func() { sb.Close() })
	raw, err := stomp.Dial("tcp", benchAddr, stomp.ConnOpt.AcceptVersion(stomp.V12), stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = raw.Disconnect() })
	return sb, raw
}

func rawSend(raw *stomp.Conn, topic string, i int, receipt bool) error {
	m := bustest.BenchMessage(i)
	opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
	for k, v := range bus.ToHeaders(m) {
		opts = append(opts, stomp.SendOpt.Header(k, v))
	}
	if receipt {
		opts = append(opts, stomp.SendOpt.Receipt)
	}
	return raw.Send(stompbus.TopicDestination(topic), "", m.Body, opts...)
}

// subscribeGroup makes the group's queue exist, so that what is published
// next is kept.
func subscribeGroup(b *testing.B, sb *stompbus.Bus, topic, group string) {
	s, err := sb.Subscribe(context.Background(), topic, group, func(context.Context, *bus.Message) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	_ = s.Close()
}

func benchPublish(b *testing.B, batch int) {
	sb, raw := benchEnv(b)
	suffix := bus.NewID()[:6]
	b.Run("raw", func(b *testing.B) {
		topic := "bench-raw-" + suffix + strconv.Itoa(b.N)
		subscribeGroup(b, sb, topic, "g")
		lat := bustest.NewLatency()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			end := min(i+batch, b.N)
			err := lat.Time(func() error {
				for j := i; j < end; j++ {
					if err := rawSend(raw, topic, j, j == end-1); err != nil {
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
		subscribeGroup(b, sb, topic, "g")
		bustest.BenchPublish(b, sb, topic, batch)
	})
}

func BenchmarkPublishSync(b *testing.B)  { benchPublish(b, 1) }
func BenchmarkPublishBatch(b *testing.B) { benchPublish(b, 100) }

func BenchmarkConsume(b *testing.B) {
	sb, raw := benchEnv(b)
	suffix := bus.NewID()[:6]
	fill := func(b *testing.B, topic string) {
		for i := 0; i < b.N; i += 200 {
			ms := make([]*bus.Message, 0, 200)
			for j := i; j < min(i+200, b.N); j++ {
				ms = append(ms, bustest.BenchMessage(j))
			}
			if err := sb.Publish(context.Background(), topic, ms...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw", func(b *testing.B) {
		topic := "bench-rawc-" + suffix + strconv.Itoa(b.N)
		subscribeGroup(b, sb, topic, "raw")
		fill(b, topic)
		sub, err := raw.Subscribe(stompbus.QueueDestination(topic, "raw"), stomp.AckClientIndividual, stomp.SubscribeOpt.Header("activemq.prefetchSize", "16"))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			m := <-sub.C
			if m.Err != nil {
				b.Fatal(m.Err)
			}
			_ = raw.Ack(m)
		}
		b.StopTimer()
		_ = sub.Unsubscribe()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		topic := "bench-busc-" + suffix + strconv.Itoa(b.N)
		subscribeGroup(b, sb, topic, "bus")
		fill(b, topic)
		bustest.BenchConsume(b, sb, topic, "bus")
	})
}
