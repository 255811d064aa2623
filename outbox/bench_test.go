package outbox_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/outbox"
)

// BenchmarkRelay measures the relay from committed rows to broker acks
// (SQLite file, embedded NATS), next to publishing the same messages
// straight to the bus in batches of the relay's size: the baseline.
//
//	go test ./outbox -run '^$' -bench Relay -benchtime 20000x
func BenchmarkRelay(b *testing.B) {
	const batch = 256
	b.Run("direct-publish", func(b *testing.B) {
		e := newEnv(b)
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			ms := make([]*bus.Message, 0, batch)
			for j := i; j < min(i+batch, b.N); j++ {
				ms = append(ms, event(j, "key-"+strconv.Itoa(j%50)))
			}
			if err := e.bus.Publish(context.Background(), "direct", ms...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("relay", func(b *testing.B) {
		e := newEnv(b)
		for i := 0; i < b.N; i += 100 { // committed beforehand, 100 per transaction
			err := e.db.InTx(context.Background(), func(tx *sql.Tx) error {
				ms := make([]*bus.Message, 0, 100)
				for j := i; j < min(i+100, b.N); j++ {
					ms = append(ms, event(j, "key-"+strconv.Itoa(j%50)))
				}
				return e.ob.Add(context.Background(), tx, "relayed", ms...)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		r := outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Batch: batch, Poll: time.Millisecond}, quiet)
		b.ResetTimer()
		for {
			n, err := r.Once(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		b.StopTimer()
		if bl, _ := e.ob.Backlog(context.Background()); bl.Unsent != 0 {
			b.Fatalf("%d left unsent", bl.Unsent)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
