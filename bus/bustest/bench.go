package bustest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/junction-go/junction/bus"
)

// Latency collects call latencies for a benchmark and reports msgs/s, p50
// and p99 with b.ReportMetric, so raw clients and adapters are measured
// alike.
type Latency struct{ h *hdrhistogram.Histogram }

// NewLatency returns an empty collector (1 µs to 60 s, 3 digits).
func NewLatency() *Latency {
	return &Latency{h: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)}
}

// Time runs fn and records how long it took.
func (l *Latency) Time(fn func() error) error {
	start := time.Now()
	err := fn()
	_ = l.h.RecordValue(max(time.Since(start).Microseconds(), 1))
	return err
}

// Report reports msgs/s for msgs messages over the benchmark's elapsed
// time, and the recorded p50 and p99 in milliseconds.
func (l *Latency) Report(b *testing.B, msgs int) {
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(l.h.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(l.h.ValueAtQuantile(99))/1000, "p99-ms")
}

// Body is the payload benchmarks send: an OrderCreated of the tutorial's
// shape.
var Body = []byte(`{"event":"OrderCreated","orderId":123,"userId":456}`)

// BenchMessage is message i of a benchmark, over 64 keys.
func BenchMessage(i int) *bus.Message {
	return &bus.Message{ID: "bench-" + strconv.Itoa(i), Type: "OrderCreated", Source: "bench", Key: strconv.Itoa(i % 64), Body: Body}
}

// BenchPublish publishes b.N messages through pub, batch at a time, each
// call timed.
func BenchPublish(b *testing.B, pub bus.Publisher, topic string, batch int) {
	lat := NewLatency()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		ms := make([]*bus.Message, 0, batch)
		for j := i; j < min(i+batch, b.N); j++ {
			ms = append(ms, BenchMessage(j))
		}
		if err := lat.Time(func() error { return pub.Publish(ctx, topic, ms...) }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	lat.Report(b, b.N)
}

// BenchConsume consumes b.N messages already in topic through sub as
// group, and reports msgs/s.
func BenchConsume(b *testing.B, sub bus.Subscriber, topic, group string) {
	var n atomic.Int64
	done := make(chan struct{})
	b.ResetTimer()
	s, err := sub.Subscribe(context.Background(), topic, group, func(context.Context, *bus.Message) error {
		if n.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("consumed %d of %d", n.Load(), b.N)
	}
	b.StopTimer()
	_ = s.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
