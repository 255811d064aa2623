package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

// TestMain doubles as the writer process of the crash test: with
// OUTBOX_CRASH_CHILD set, the test binary writes orders through the outbox
// and relays them, and exits with 137 (as if killed) at the k-th hit of
// its failpoint.
func TestMain(m *testing.M) {
	if os.Getenv("OUTBOX_RELAY_CHILD") != "" {
		if err := relayChild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("OUTBOX_CRASH_CHILD") == "" {
		os.Exit(m.Run())
	}
	if err := crashChild(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

const crashOrders = 200

// crashChild writes orders 1..crashOrders (resuming after the last
// committed one), each with its OrderCreated in the same transaction, and
// relays after each commit.
func crashChild() error {
	ctx := context.Background()
	point := os.Getenv("OUTBOX_CRASH_POINT")
	k, _ := strconv.Atoi(os.Getenv("OUTBOX_CRASH_K"))
	hits := 0
	failpoint := func(name string) {
		if name == point {
			if hits++; hits == k {
				os.Exit(137)
			}
		}
	}
	db, err := sqldb.Open(ctx, os.Getenv("OUTBOX_CRASH_DB"))
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)`); err != nil {
		return err
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		return err
	}
	b, err := natsbus.Connect(os.Getenv("OUTBOX_CRASH_NATS"), natsbus.Config{})
	if err != nil {
		return err
	}
	defer b.Close()
	relay := outbox.NewRelay(ob, b, outbox.RelayConfig{Holder: "writer", Failpoint: failpoint}, quiet)
	drain := func() error {
		for {
			n, err := relay.Once(ctx)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
		}
	}
	if err := drain(); err != nil { // what an earlier run left
		return err
	}
	var next int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM orders`).Scan(&next); err != nil {
		return err
	}
	for i := next; i <= crashOrders; i++ {
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES (?)`, i); err != nil {
				return err
			}
			id := "order-" + strconv.Itoa(i)
			if err := ob.Add(ctx, tx, "crash", &bus.Message{ID: id, Type: "OrderCreated", Source: "test", Key: id, Body: []byte(id)}); err != nil {
				return err
			}
			failpoint("outbox.beforeCommit")
			return nil
		})
		if err != nil {
			return err
		}
		failpoint("outbox.afterCommitBeforePublish")
		if err := drain(); err != nil {
			return err
		}
	}
	return nil
}

// TestCrashWindows is OBX-CRASH-WINDOWS: the writer is killed (exit 137,
// no cleanup) at the k-th pass of each failpoint, k random, and started
// again until it has written 200 orders. Then every committed order must
// have exactly one event stored (Msg-Id dedupe absorbs the re-publish after
// a crash between publish and mark) and exactly one effect at an
// idempotent consumer, and no event may exist for an order never committed.
func TestCrashWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("runs many writer processes; skipped with -short")
	}
	ns := natstest.Start(t, t.TempDir())
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	for _, point := range []string{"outbox.beforeCommit", "outbox.afterCommitBeforePublish", "relay.afterPublish"} {
		t.Run(point, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "writer.db")
			topic := "crash"
			// A fresh stream per failpoint: delete what the previous one left.
			nb, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer nb.Close()
			js, _ := jetstream.New(nb.Conn())
			_ = js.DeleteStream(context.Background(), natsbus.StreamName(topic))

			crashes := 0
			for runs := 0; ; runs++ {
				if runs > 500 {
					t.Fatal("writer never finished")
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "OUTBOX_CRASH_CHILD=1", "OUTBOX_CRASH_POINT="+point,
					"OUTBOX_CRASH_K="+strconv.Itoa(1+rng.IntN(25)), "OUTBOX_CRASH_DB="+dbPath, "OUTBOX_CRASH_NATS="+ns.ClientURL())
				out, err := cmd.CombinedOutput()
				if err == nil {
					break
				}
				if cmd.ProcessState.ExitCode() != 137 {
					t.Fatalf("writer failed: %v\n%s", err, out)
				}
				crashes++
			}

			// An idempotent consumer applies each event to its own database.
			cdb, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "consumer.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer cdb.Close()
			if _, err := outbox.New(context.Background(), cdb); err != nil {
				t.Fatal(err)
			}
			if _, err := cdb.ExecContext(context.Background(), `CREATE TABLE effects (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			deliveries := 0
			h := outbox.Idempotent(cdb, "checker", func(ctx context.Context, tx *sql.Tx, m *bus.Message) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (id, n) VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1`, m.ID)
				return err
			})
			sub, err := nb.Subscribe(context.Background(), topic, "checker", func(ctx context.Context, m *bus.Message) error {
				mu.Lock()
				deliveries++
				mu.Unlock()
				return h(ctx, m)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			var effects, rows, dup int
			deadline := time.Now().Add(30 * time.Second)
			for {
				_ = cdb.QueryRowContext(context.Background(), `SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(CASE WHEN n > 1 THEN 1 ELSE 0 END), 0) FROM effects`).Scan(&rows, &effects, &dup)
				if rows >= crashOrders || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			wdb, err := sqldb.Open(context.Background(), dbPath)
			if err != nil {
				t.Fatal(err)
			}
			defer wdb.Close()
			var committed, unsent int
			_ = wdb.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM orders`).Scan(&committed)
			_ = wdb.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent)
			s, err := js.Stream(context.Background(), natsbus.StreamName(topic))
			if err != nil {
				t.Fatal(err)
			}
			info, _ := s.Info(context.Background())
			var strays int
			_ = cdb.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM effects WHERE CAST(SUBSTR(id, 7) AS INTEGER) NOT BETWEEN 1 AND ?`, committed).Scan(&strays)
			mu.Lock()
			t.Logf("OBX-CRASH-WINDOWS %s seed %d: %d crashes; committed %d, stored %d, unsent %d; deliveries %d, effects %d on %d orders, duplicate effects %d, effects without an order %d",
				point, seed, crashes, committed, info.State.Msgs, unsent, deliveries, effects, rows, dup, strays)
			mu.Unlock()
			if committed != crashOrders || unsent != 0 {
				t.Errorf("committed %d orders with %d unsent; want %d and 0", committed, unsent, crashOrders)
			}
			if info.State.Msgs != uint64(committed) {
				t.Errorf("stream stores %d events for %d committed orders; want one each", info.State.Msgs, committed)
			}
			if rows != committed || effects != committed || dup != 0 || strays != 0 {
				t.Errorf("effects: %d orders, %d applications, %d duplicated, %d without an order; want %d, %d, 0, 0", rows, effects, dup, strays, committed, committed)
			}
			if crashes == 0 {
				t.Errorf("no crash happened at %s; the run proves nothing", point)
			}
		})
	}
}

// relayChild runs a relay on an existing outbox until the backlog is empty
// (and stays empty for a moment).
func relayChild() error {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, os.Getenv("OUTBOX_RELAY_DB"))
	if err != nil {
		return err
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		return err
	}
	b, err := natsbus.Connect(os.Getenv("OUTBOX_RELAY_NATS"), natsbus.Config{})
	if err != nil {
		return err
	}
	defer b.Close()
	relay := outbox.NewRelay(ob, b, outbox.RelayConfig{Holder: os.Getenv("OUTBOX_RELAY_CHILD"), Batch: 20, Lease: 500 * time.Millisecond}, quiet)
	idle := 0
	for idle < 20 {
		n, err := relay.Once(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay round:", err) // lease lost, broker hiccup: go on
		}
		bl, _ := ob.Backlog(ctx)
		if n == 0 && bl.Unsent == 0 {
			idle++
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// TestConcurrentRelayProcesses is OBX-CONCURRENT-RELAYS with processes: two
// relays share an outbox of 5,000 messages over 50 keys; one is killed
// with SIGKILL mid-run and started again, the other is stopped (SIGSTOP)
// past its lease and continued. Every message must be stored once, applied
// once, and each key's messages applied in order.
func TestConcurrentRelayProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs relay processes; skipped with -short")
	}
	e := newEnv(t)
	ctx := context.Background()
	natsURL := e.bus.Conn().ConnectedUrl()
	const n, keys = 5000, 50
	for i := 0; i < n; i += 100 {
		err := e.db.InTx(ctx, func(tx *sql.Tx) error {
			ms := make([]*bus.Message, 0, 100)
			for j := i; j < i+100; j++ {
				k := strconv.Itoa(j % keys)
				ms = append(ms, &bus.Message{ID: fmt.Sprintf("row-%d", j), Type: "Seq", Source: "test", Key: k, Body: []byte(strconv.Itoa(j / keys))})
			}
			return e.ob.Add(ctx, tx, "relays", ms...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var dbPath string
	_ = e.db.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&dbPath)

	cb := e.bus
	var mu sync.Mutex
	last := map[string]int{}
	seen := map[string]int{}
	disorder := 0
	sub, err := cb.Subscribe(ctx, "relays", "checker", func(_ context.Context, m *bus.Message) error {
		seq, _ := strconv.Atoi(string(m.Body))
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID]++
		if seen[m.ID] > 1 {
			return nil // a redelivery: the inbox of a real consumer absorbs it
		}
		if prev, ok := last[m.Key]; ok && seq != prev+1 {
			disorder++
		}
		last[m.Key] = seq
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	start := func(holder string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "OUTBOX_RELAY_CHILD="+holder, "OUTBOX_RELAY_DB="+dbPath, "OUTBOX_RELAY_NATS="+natsURL)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	sent := func() int {
		var c int
		_ = e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL`).Scan(&c)
		return c
	}
	waitSent := func(atLeast int) {
		deadline := time.Now().Add(30 * time.Second)
		for sent() < atLeast && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	a, b := start("relay-a"), start("relay-b")
	waitSent(n / 5)
	_ = a.Process.Signal(syscall.SIGKILL) // whoever holds the lease, a dies mid-run
	_, _ = a.Process.Wait()
	waitSent(2 * n / 5)
	_ = b.Process.Signal(syscall.SIGSTOP) // b stalls past its lease ...
	a = start("relay-a")                  // ... and a, restarted, takes over
	waitSent(3 * n / 5)
	_ = b.Process.Signal(syscall.SIGCONT)
	for _, c := range []*exec.Cmd{a, b} {
		if err := c.Wait(); err != nil {
			t.Fatalf("relay process: %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	info := func() uint64 {
		js, _ := jetstream.New(cb.Conn())
		s, err := js.Stream(ctx, natsbus.StreamName("relays"))
		if err != nil {
			t.Fatal(err)
		}
		i, _ := s.Info(ctx)
		return i.State.Msgs
	}()
	var token int64
	_ = e.db.QueryRowContext(ctx, `SELECT token FROM outbox_lease`).Scan(&token)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("OBX-CONCURRENT-RELAYS: %d rows, stored %d, consumed %d unique, out-of-order %d, lease token %d (takeovers %d)", n, info, len(seen), disorder, token, token-1)
	if info != n || len(seen) != n || disorder != 0 || sent() != n {
		t.Errorf("stored %d, consumed %d, out of order %d, marked %d; want %d, %d, 0, %d", info, len(seen), disorder, sent(), n, n, n)
	}
}
