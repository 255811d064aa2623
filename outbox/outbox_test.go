package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	db  *sqldb.DB
	ob  *outbox.Outbox
	bus *natsbus.Bus
}

// newEnv returns an outbox on a real SQLite file and a bus on an embedded
// NATS server.
func newEnv(t testing.TB) *env { return newEnvOn(t, sqldbtest.SQLite(t)) }

// forEachDB runs fn once per database kind (SQLite, PostgreSQL), each with
// an outbox on a fresh database and a bus on an embedded NATS server.
func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) { fn(t, newEnvOn(t, db)) })
}

func newEnvOn(t testing.TB, db *sqldb.DB) *env {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE effects (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t, t.TempDir())
	b, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{db: db, ob: ob, bus: b}
}

func event(i int, key string) *bus.Message {
	return &bus.Message{ID: fmt.Sprintf("evt-%05d", i), Type: "Counted", Source: "test", Key: key, Body: []byte(strconv.Itoa(i))}
}

// write commits n messages for topic through the outbox, one transaction
// each, spread over keys.
func (e *env) write(t *testing.T, topic string, from, n, keys int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		err := e.db.InTx(context.Background(), func(tx *sql.Tx) error {
			return e.ob.Add(context.Background(), tx, topic, event(i, "key-"+strconv.Itoa(i%keys)))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// streamCount returns how many messages topic's stream holds.
func (e *env) streamCount(t *testing.T, topic string) uint64 {
	t.Helper()
	js, _ := jetstream.New(e.bus.Conn())
	s, err := js.Stream(context.Background(), natsbus.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func runRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	return func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommittedMessagesArePublishedInOrderAndRolledBackOnesNever(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.write(t, "counts", 0, 300, 7)
		rolledBack := errors.New("changed my mind")
		err := e.db.InTx(ctx, func(tx *sql.Tx) error {
			if err := e.ob.Add(ctx, tx, "counts", event(999, "key-0")); err != nil {
				return err
			}
			return rolledBack
		})
		if !errors.Is(err, rolledBack) {
			t.Fatal(err)
		}

		var mu sync.Mutex
		got := map[string]int{}
		last := map[string]int{}
		disorder := 0
		sub, err := e.bus.Subscribe(ctx, "counts", "checker", func(_ context.Context, m *bus.Message) error {
			n, _ := strconv.Atoi(string(m.Body))
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := last[m.Key]; ok && n < prev {
				disorder++
			}
			last[m.Key] = n
			got[m.ID]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		stop := runRelay(t, outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Batch: 64}, quiet))
		defer stop()
		waitFor(t, "300 messages consumed", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 300 })
		waitFor(t, "backlog drained", func() bool { b, _ := e.ob.Backlog(ctx); return b.Unsent == 0 })
		mu.Lock()
		defer mu.Unlock()
		if got["evt-00999"] != 0 {
			t.Error("a message from a rolled-back transaction was published")
		}
		if disorder != 0 {
			t.Errorf("%d messages handled before an earlier one of the same key", disorder)
		}
	})
}

// flaky publishes through the real bus but fails some calls: before
// publishing (nothing stored) or after (stored, but the ack is lost).
type flaky struct {
	bus.Publisher
	calls       atomic.Int64
	failBefore  func(n int64) bool
	failAfter   func(n int64) bool
	failedAfter atomic.Int64
}

func (f *flaky) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	n := f.calls.Add(1)
	if f.failBefore != nil && f.failBefore(n) {
		return errors.New("broker unavailable")
	}
	if err := f.Publisher.Publish(ctx, topic, msgs...); err != nil {
		return err
	}
	if f.failAfter != nil && f.failAfter(n) {
		f.failedAfter.Add(1)
		return errors.New("ack lost")
	}
	return nil
}

// TestFailuresLoseNothingAndStoreNoDuplicate: with the broker failing
// before storing and after storing (lost acks), every message ends in the
// stream exactly once (dedupe by message id) and every row is marked.
func TestFailuresLoseNothingAndStoreNoDuplicate(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const n = 500
		e.write(t, "flaky", 0, n, 10)
		pub := &flaky{Publisher: e.bus, failBefore: func(n int64) bool { return n%3 == 0 }, failAfter: func(n int64) bool { return n%4 == 1 }}
		r := outbox.NewRelay(e.ob, pub, outbox.RelayConfig{Batch: 32, Poll: 5 * time.Millisecond}, quiet)
		stop := runRelay(t, r)
		defer stop()
		waitFor(t, "backlog drained", func() bool { b, _ := e.ob.Backlog(ctx); return b.Unsent == 0 })
		if got := e.streamCount(t, "flaky"); got != n {
			t.Errorf("stream holds %d messages, want %d (lost or duplicated)", got, n)
		}
		if pub.failedAfter.Load() == 0 {
			t.Error("no lost ack was injected; the test proves nothing")
		}
		t.Logf("sent %d, lost acks %d, publish calls %d, stored %d", n, pub.failedAfter.Load(), pub.calls.Load(), e.streamCount(t, "flaky"))
	})
}

// downTopic fails every publish to one topic while down is set.
type downTopic struct {
	bus.Publisher
	topic string
	down  atomic.Bool
}

func (d *downTopic) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	if topic == d.topic && d.down.Load() {
		return errors.New("topic unavailable")
	}
	return d.Publisher.Publish(ctx, topic, msgs...)
}

// TestOneFailingTopicHoldsOnlyItsOwnRows: a round publishes every topic
// at once; when one topic fails, the others' rows are marked sent and the
// failing topic's rows all stay for the next round, with the error
// recorded, and go out in order once it recovers.
func TestOneFailingTopicHoldsOnlyItsOwnRows(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 30 {
		topic := []string{"up-a", "down", "up-b"}[i%3]
		if err := e.db.InTx(ctx, func(tx *sql.Tx) error { return e.ob.Add(ctx, tx, topic, event(i, "k")) }); err != nil {
			t.Fatal(err)
		}
	}
	pub := &downTopic{Publisher: e.bus, topic: "down"}
	pub.down.Store(true)
	r := outbox.NewRelay(e.ob, pub, outbox.RelayConfig{}, quiet)
	n, err := r.Once(ctx)
	if err == nil || n != 20 {
		t.Fatalf("Once = %d, %v; want the 20 rows of the two healthy topics and an error", n, err)
	}
	var unsent, failedRows int
	if err := e.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_error IS NOT NULL THEN 1 ELSE 0 END), 0) FROM outbox WHERE sent_at IS NULL AND topic = 'down'`).Scan(&unsent, &failedRows); err != nil {
		t.Fatal(err)
	}
	if b, _ := e.ob.Backlog(ctx); b.Unsent != 10 || unsent != 10 || failedRows != 1 {
		t.Errorf("after the round: %d unsent (%d of topic down, %d with the error), want the 10 of down, the first with its error", b.Unsent, unsent, failedRows)
	}
	if got := e.streamCount(t, "up-a") + e.streamCount(t, "up-b"); got != 20 {
		t.Errorf("healthy topics hold %d messages, want 20", got)
	}
	// The topic recovers: the next round sends its rows, in order.
	pub.down.Store(false)
	if n, err := r.Once(ctx); err != nil || n != 10 {
		t.Fatalf("Once after the recovery = %d, %v; want the 10 held rows", n, err)
	}
	var mu sync.Mutex
	var order []int
	sub, err := e.bus.Subscribe(ctx, "down", "checker", func(_ context.Context, m *bus.Message) error {
		n, _ := strconv.Atoi(string(m.Body))
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitFor(t, "the held rows are consumed", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 10 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.IsSorted(order) {
		t.Errorf("held rows consumed in the order %v, want seq order", order)
	}
}

// TestConcurrentRelaysPublishEachOnceAndFence: two relays on one outbox
// publish everything exactly once between them (by id), and a relay that
// lost its lease cannot mark rows.
func TestConcurrentRelaysPublishEachOnceAndFence(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const n = 1000
		e.write(t, "shared", 0, n, 50)
		a := outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Holder: "a", Batch: 50, Poll: 5 * time.Millisecond, Lease: 300 * time.Millisecond}, quiet)
		b := outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Holder: "b", Batch: 50, Poll: 5 * time.Millisecond, Lease: 300 * time.Millisecond}, quiet)
		stopA, stopB := runRelay(t, a), runRelay(t, b)
		defer stopB()
		waitFor(t, "some rows sent", func() bool {
			var sent int
			_ = e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL`).Scan(&sent)
			return sent > 0
		})
		stopA() // whoever holds the lease, one relay stops mid-stream; the other takes over
		waitFor(t, "backlog drained", func() bool {
			bl, _ := e.ob.Backlog(ctx)
			var total int
			_ = e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&total)
			return bl.Unsent == 0 && total == n
		})
		if got := e.streamCount(t, "shared"); got != n {
			t.Errorf("stream holds %d messages, want %d", got, n)
		}

	})
}

// pausing publishes through the real bus, but before its first publish it
// runs pause: the relay is "stopped" mid-batch (SIGSTOP) while it thinks it
// holds the lease.
type pausing struct {
	bus.Publisher
	once  sync.Once
	pause func()
}

func (p *pausing) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	p.once.Do(p.pause)
	return p.Publisher.Publish(ctx, topic, msgs...)
}

// TestPausedRelayIsFencedOut: relay a takes the lease and reads a batch,
// then stalls past its lease; b takes over and publishes; when a wakes and
// publishes, its marks are refused (fencing token), and no message is
// stored twice.
func TestPausedRelayIsFencedOut(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.write(t, "fenced", 0, 20, 2)
		b := outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Holder: "b"}, quiet)
		var bErr error
		pub := &pausing{Publisher: e.bus, pause: func() {
			// a's lease lapses while it is stopped; b takes over.
			if _, err := e.db.ExecContext(ctx, `UPDATE outbox_lease SET expires_at = 0`); err != nil {
				t.Error(err)
			}
			_, bErr = b.Once(ctx)
		}}
		a := outbox.NewRelay(e.ob, pub, outbox.RelayConfig{Holder: "a"}, quiet)
		_, err := a.Once(ctx)
		if bErr != nil {
			t.Fatalf("b.Once = %v", bErr)
		}
		if !errors.Is(err, outbox.ErrLeaseLost) {
			t.Errorf("a.Once after losing its lease = %v, want ErrLeaseLost", err)
		}
		if got := e.streamCount(t, "fenced"); got != 20 {
			t.Errorf("stream holds %d messages, want 20 (a's late publish deduplicated by id)", got)
		}
		var token int64
		var holder string
		_ = e.db.QueryRowContext(ctx, `SELECT holder, token FROM outbox_lease`).Scan(&holder, &token)
		if holder != "b" || token != 2 {
			t.Errorf("lease = %s/%d, want b/2", holder, token)
		}
	})
}

// TestIdempotentAppliesEachMessageOnce is IDC-DUP-AND-REORDER: it feeds
// 5,000 messages, each 1 to 3 times and shuffled within windows of 50, to
// an idempotent handler, and compares the effects with applying each
// unique message once.
func TestIdempotentAppliesEachMessageOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// The first delivery of one message fails after writing its effect:
		// the effect and the inbox record must roll back together, and a later
		// delivery apply it.
		failFirst := map[string]bool{"evt-00007": true}
		injected := errors.New("effect failed")
		apply := outbox.Idempotent(e.db, "counter", func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
			_, err := tx.ExecContext(ctx, e.db.Dialect.Rebind(`INSERT INTO effects (id, n) VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = effects.n + 1`), m.ID)
			if err == nil && failFirst[m.ID] {
				failFirst[m.ID] = false
				return injected
			}
			return err
		})
		const unique = 5000
		var stream []*bus.Message
		for i := range unique {
			for range 1 + i%3 { // each message 1 to 3 times
				stream = append(stream, event(i, ""))
			}
		}
		// Shuffle within windows of 50, deterministically.
		for i := 0; i+50 <= len(stream); i += 50 {
			w := stream[i : i+50]
			for j := range w {
				k := (j*31 + i) % len(w)
				w[j], w[k] = w[k], w[j]
			}
		}
		failures := 0
		before := outbox.DuplicatesSkipped()["counter"]
		for _, m := range stream {
			if err := apply(ctx, m); errors.Is(err, injected) {
				failures++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if failures != 1 {
			t.Fatalf("injected failures = %d, want 1", failures)
		}
		// Every delivery but the applied ones and the failed one was a
		// duplicate the inbox skipped.
		if skipped := outbox.DuplicatesSkipped()["counter"] - before; skipped != uint64(len(stream)-unique-1) {
			t.Errorf("duplicates skipped = %d, want %d", skipped, len(stream)-unique-1)
		}
		var rows, total, dup int
		_ = e.db.QueryRowContext(ctx, `SELECT COUNT(*), SUM(n), SUM(CASE WHEN n > 1 THEN 1 ELSE 0 END) FROM effects`).Scan(&rows, &total, &dup)
		t.Logf("IDC-DUP-AND-REORDER: deliveries %d, unique %d, effects %d, duplicate effects %d, injected failures %d", len(stream), unique, total, dup, failures)
		if rows != unique || total != unique || dup != 0 {
			t.Errorf("effects: %d rows, %d applications, %d duplicated; want %d, %d, 0", rows, total, dup, unique, unique)
		}
	})
}

// TestInTxWakesTheRelay: messages committed through InTx go out at once,
// though the relay would not look again for an hour on its own.
func TestInTxWakesTheRelay(t *testing.T) {
	e := newEnv(t)
	stop := runRelay(t, outbox.NewRelay(e.ob, e.bus, outbox.RelayConfig{Holder: "r", Poll: time.Hour}, quiet))
	defer stop()
	for i := range 5 {
		err := e.ob.InTx(context.Background(), func(tx *sql.Tx) error {
			return e.ob.Add(context.Background(), tx, "woken", event(i, "k"))
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("message %d published without a poll", i), func() bool {
			js, _ := jetstream.New(e.bus.Conn())
			s, err := js.Stream(context.Background(), natsbus.StreamName("woken"))
			if err != nil {
				return false // not created before the first publish
			}
			info, err := s.Info(context.Background())
			return err == nil && info.State.Msgs == uint64(i+1)
		})
	}
}

// unanswered publishes through the real bus, except to one topic, where
// it waits, as a publish whose acknowledgement is lost would, until its
// context ends.
type unanswered struct {
	bus.Publisher
	topic string
	held  atomic.Int64
}

func (u *unanswered) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	if topic != u.topic {
		return u.Publisher.Publish(ctx, topic, msgs...)
	}
	u.held.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// TestARoundDoesNotWaitForeverForThePublisher: a Publish that never
// returns by itself fails the round after PublishTimeout, even when the
// relay's own context has no end; the other topics' rows are marked and
// the held topic's rows stay unsent for the next round.
func TestARoundDoesNotWaitForeverForThePublisher(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 10 {
		topic := []string{"answered", "unanswered"}[i%2]
		if err := e.db.InTx(ctx, func(tx *sql.Tx) error { return e.ob.Add(ctx, tx, topic, event(i, "k")) }); err != nil {
			t.Fatal(err)
		}
	}
	pub := &unanswered{Publisher: e.bus, topic: "unanswered"}
	r := outbox.NewRelay(e.ob, pub, outbox.RelayConfig{PublishTimeout: 100 * time.Millisecond}, quiet)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() { n, err := r.Once(ctx); done <- result{n, err} }()
	var got result
	select {
	case got = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the round still waits for a publisher that never answers after 30 s")
	}
	if got.err == nil || !errors.Is(got.err, context.DeadlineExceeded) || got.n != 5 {
		t.Errorf("Once = %d, %v; want the 5 answered rows and the held topic's deadline", got.n, got.err)
	}
	if b, _ := e.ob.Backlog(ctx); b.Unsent != 5 || pub.held.Load() != 1 {
		t.Errorf("after the round: %d unsent, %d held publishes; want the 5 of the held topic, 1", b.Unsent, pub.held.Load())
	}
}
