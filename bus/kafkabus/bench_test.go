package kafkabus_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/kafkabus"
)

// The raw franz-go client and kafkabus doing the same work against kfake in
// the same run:
//
//	go test ./bus/kafkabus -run '^$' -bench . -benchtime 20000x
func benchCluster(b *testing.B) (*kfake.Cluster, *kafkabus.Bus, *kgo.Client) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	kb, err := kafkabus.Connect(kafkabus.Config{Brokers: c.ListenAddrs(), Partitions: 6})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kb.Close() })
	raw, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)
	return c, kb, raw
}

func rawTopic(b *testing.B, raw *kgo.Client, topic string) {
	if _, err := kadm.NewClient(raw).CreateTopic(context.Background(), 6, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
}

func rawRecord(topic string, i int) *kgo.Record {
	m := bustest.BenchMessage(i)
	r := &kgo.Record{Topic: topic, Key: []byte(m.Key), Value: m.Body}
	for k, v := range bus.ToHeaders(m) {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return r
}

func benchPublish(b *testing.B, batch int) {
	_, kb, raw := benchCluster(b)
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		topic := "raw" + bus.NewID()[:8]
		rawTopic(b, raw, topic)
		lat := bustest.NewLatency()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			recs := make([]*kgo.Record, 0, batch)
			for j := i; j < min(i+batch, b.N); j++ {
				recs = append(recs, rawRecord(topic, j))
			}
			if err := lat.Time(func() error { return raw.ProduceSync(ctx, recs...).FirstErr() }); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		lat.Report(b, b.N)
	})
	b.Run("bus", func(b *testing.B) { bustest.BenchPublish(b, kb, "bus"+bus.NewID()[:8], batch) })
}

func BenchmarkPublishSync(b *testing.B)  { benchPublish(b, 1) }
func BenchmarkPublishBatch(b *testing.B) { benchPublish(b, 100) }

func BenchmarkConsume(b *testing.B) {
	c, kb, raw := benchCluster(b)
	ctx := context.Background()
	fill := func(b *testing.B, topic string) {
		rawTopic(b, raw, topic)
		for i := 0; i < b.N; i += 500 {
			recs := make([]*kgo.Record, 0, 500)
			for j := i; j < min(i+500, b.N); j++ {
				recs = append(recs, rawRecord(topic, j))
			}
			if err := raw.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("raw", func(b *testing.B) {
		topic := "rawc" + bus.NewID()[:8]
		fill(b, topic)
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("raw"), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		b.ResetTimer()
		for got := 0; got < b.N; {
			fs := cl.PollFetches(ctx)
			recs := fs.Records()
			got += len(recs)
			if err := cl.CommitRecords(ctx, recs...); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("bus", func(b *testing.B) {
		topic := "busc" + bus.NewID()[:8]
		fill(b, topic)
		bustest.BenchConsume(b, kb, topic, "bus")
	})
}
