package saga_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// participant is one service of the benchmark: its own SQLite database
// where each step writes a row, an outbox for its replies, and a relay.
type participant struct {
	db *sqldb.DB
	ob *outbox.Outbox
}

func newParticipant(b *testing.B) *participant {
	ctx := context.Background()
	db := sqldbtest.SQLite(b)
	if _, err := db.ExecContext(ctx, `CREATE TABLE effects (key TEXT PRIMARY KEY, kind TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	return &participant{db: db, ob: ob}
}

// apply is the step's own work: one row in one transaction.
func (p *participant) apply(ctx context.Context, tx *sql.Tx, key, kind string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (key, kind) VALUES (?, ?) ON CONFLICT DO NOTHING`, key, kind)
	return err
}

// BenchmarkSagaVsDirect is an order through the orchestrated saga beside
// the same work done with direct calls, in one process and one run: three
// participants, each with its own SQLite database, and an owner with its
// own. Saga: the owner starts the saga in its transaction; each step's
// command goes through the owner's outbox and relay to embedded NATS
// JetStream, the participant applies it once (inbox) with its reply in one
// transaction, its relay publishes the reply, the owner's engine moves on;
// the owner records the end in its transaction. Direct: the owner's
// transaction, then one transaction per participant called in turn, then
// the owner's again — no broker, no outbox, and none of what they buy
// (retries, timeouts, compensation, surviving a crash). 32 orders in
// flight; reported: orders/s and mean latency of each, and the ratio.
func BenchmarkSagaVsDirect(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ns := natstest.Start(b, b.TempDir())
	nb, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()

	steps := []string{"reserve", "authorize", "schedule"}
	parts := make([]*participant, len(steps))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range parts {
		p := newParticipant(b)
		parts[i] = p
		relay := outbox.NewRelay(p.ob, nb, outbox.RelayConfig{Poll: 50 * time.Millisecond}, log)
		wg.Go(func() { _ = relay.Run(ctx) })
		sub, err := nb.Subscribe(ctx, "bench-"+steps[i], "p", p.ob.Idempotent("p", func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
			c, err := saga.ParseCommand(m)
			if err != nil {
				return bus.Permanent(err)
			}
			if err := p.apply(ctx, tx, c.Key, m.Type); err != nil {
				return err
			}
			reply, err := c.Reply(true, "", nil)
			if err != nil {
				return err
			}
			reply.Source = "participant"
			return p.ob.Add(ctx, tx, c.ReplyTo, reply)
		}))
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
	}

	owner := newParticipant(b)
	def := &saga.Definition{Name: "order"}
	for _, s := range steps {
		def.Steps = append(def.Steps, saga.Step{Name: s, Do: saga.Action{Topic: "bench-" + s, Type: s}, Timeout: 10 * time.Second})
	}
	def.OnEnd = func(ctx context.Context, tx *sql.Tx, in *saga.Instance) error {
		return owner.apply(ctx, tx, in.ID+"-end", string(in.Status))
	}
	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	eng, err := saga.New(ctx, owner.db, owner.ob, saga.Config{ReplyTopic: "bench-replies", Source: "owner", Ended: func(in *saga.Instance) {
		mu.Lock()
		ch := waiting[in.ID]
		delete(waiting, in.ID)
		mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}}, log, def)
	if err != nil {
		b.Fatal(err)
	}
	relay := outbox.NewRelay(owner.ob, nb, outbox.RelayConfig{Poll: 50 * time.Millisecond}, log)
	wg.Go(func() { _ = relay.Run(ctx) })
	wg.Go(func() { _ = eng.Run(ctx) })
	replies, err := nb.Subscribe(ctx, "bench-replies", "owner", eng.HandleReply)
	if err != nil {
		b.Fatal(err)
	}
	defer replies.Close()

	var seq atomic.Int64
	viaSaga := func() error {
		id := fmt.Sprintf("o-%d", seq.Add(1))
		done := make(chan struct{})
		mu.Lock()
		waiting[id] = done
		mu.Unlock()
		err := owner.db.InTx(ctx, func(tx *sql.Tx) error {
			if err := owner.apply(ctx, tx, id, "placed"); err != nil {
				return err
			}
			return eng.Start(ctx, tx, "order", id, nil)
		})
		if err != nil {
			return err
		}
		owner.ob.Notify()
		select {
		case <-done:
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("saga %s did not end within 30 s", id)
		}
	}
	direct := func() error {
		id := fmt.Sprintf("d-%d", seq.Add(1))
		if err := owner.db.InTx(ctx, func(tx *sql.Tx) error { return owner.apply(ctx, tx, id, "placed") }); err != nil {
			return err
		}
		for i, p := range parts {
			if err := p.db.InTx(ctx, func(tx *sql.Tx) error { return p.apply(ctx, tx, id+"-"+steps[i], steps[i]) }); err != nil {
				return err
			}
		}
		return owner.db.InTx(ctx, func(tx *sql.Tx) error { return owner.apply(ctx, tx, id+"-end", "completed") })
	}

	// Alternating rounds of 500 orders by 32 callers, all through the saga
	// or all direct, so both see the same machine.
	const round, callers = 500, 32
	run := func(fn func() error, n int) (time.Duration, []time.Duration) {
		var next atomic.Int64
		var lmu sync.Mutex
		var lat []time.Duration
		var cw sync.WaitGroup
		start := time.Now()
		for range callers {
			cw.Go(func() {
				for next.Add(1) <= int64(n) {
					t0 := time.Now()
					if err := fn(); err != nil {
						b.Error(err)
						return
					}
					lmu.Lock()
					lat = append(lat, time.Since(t0))
					lmu.Unlock()
				}
			})
		}
		cw.Wait()
		return time.Since(start), lat
	}
	b.ResetTimer()
	var sagaTime, directTime time.Duration
	var sagaLat, directLat []time.Duration
	for done, k := 0, 0; done < b.N; k++ {
		n := min(round, b.N-done)
		if k%2 == 0 {
			d, l := run(viaSaga, n)
			sagaTime, sagaLat = sagaTime+d, append(sagaLat, l...)
		} else {
			d, l := run(direct, n)
			directTime, directLat = directTime+d, append(directLat, l...)
		}
		done += n
	}
	b.StopTimer()
	if len(sagaLat) == 0 || len(directLat) == 0 {
		return // too few orders for both (b.N ≤ one round)
	}
	pct := func(l []time.Duration, q float64) float64 {
		slices.Sort(l)
		return float64(l[int(float64(len(l)-1)*q)].Microseconds()) / 1000
	}
	sagaRate, directRate := float64(len(sagaLat))/sagaTime.Seconds(), float64(len(directLat))/directTime.Seconds()
	b.ReportMetric(sagaRate, "saga-orders/s")
	b.ReportMetric(directRate, "direct-orders/s")
	b.ReportMetric(directRate/sagaRate, "direct/saga")
	b.ReportMetric(pct(sagaLat, 0.5), "saga-p50-ms")
	b.ReportMetric(pct(sagaLat, 0.99), "saga-p99-ms")
	b.ReportMetric(pct(directLat, 0.5), "direct-p50-ms")
	b.ReportMetric(pct(directLat, 0.99), "direct-p99-ms")
}
