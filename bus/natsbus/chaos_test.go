package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/natsbus/natstest"
)

// TestMain doubles as a NATS server process for the kill -9 test: with
// NATSBUS_TEST_SERVER=dir,port set, the test binary runs the server until
// it is killed.
func TestMain(m *testing.M) {
	spec := os.Getenv("NATSBUS_TEST_SERVER")
	if spec == "" {
		os.Exit(m.Run())
	}
	dir, port, _ := strings.Cut(spec, ",")
	p, _ := strconv.Atoi(port)
	ns := newServer(dir, p)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		os.Exit(3)
	}
	select {}
}

func newServer(dir string, port int) *server.Server {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		panic(err)
	}
	return ns
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// outcome classifies a publish error as a client sees it: only a nil error
// is known to be stored.
func outcome(err error) bustest.Outcome {
	if err == nil {
		return bustest.OK
	}
	return bustest.Indeterminate
}

// consume reads topic as group "checker" into ledger.
func consume(t *testing.T, url, topic string, l *bustest.Ledger) func() {
	t.Helper()
	b, err := natsbus.Connect(url, natsbus.Config{Name: "checker", AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var sub bus.Subscription
	// The stream may not exist until the first publish; retry the subscribe.
	deadline := time.Now().Add(20 * time.Second)
	for {
		sub, err = b.Subscribe(ctx, topic, "checker", func(_ context.Context, m *bus.Message) error { l.Read(m.ID); return nil })
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return func() { _ = sub.Close(); _ = b.Close() }
}

func waitDrained(t *testing.T, l *bustest.Ledger, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for l.Missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRestartNoLoss is BRK-RESTART-NO-LOSS: the broker is shut down and
// started again (same port, same store) every 1-3 s, down for up to 2 s,
// while 10,000 messages are published and consumed. Every acknowledged
// message must be read.
func TestRestartNoLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15 s fault run; skipped with -short")
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	dir, port := t.TempDir(), freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var mu sync.Mutex
	ns := newServer(dir, port)
	ns.Start()
	ns.ReadyForConnections(10 * time.Second)
	defer func() { mu.Lock(); ns.Shutdown(); mu.Unlock() }()

	ledger := bustest.NewLedger()
	pub, err := natsbus.Connect(url, natsbus.Config{Name: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(context.Background(), "bounce", &bus.Message{ID: "warm-up", Type: "T", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	ledger.Attempt("warm-up", bustest.OK)
	stopConsumer := consume(t, url, "bounce", ledger)
	defer stopConsumer()

	done := make(chan struct{})
	bounces := 0
	var bouncer sync.WaitGroup
	bouncer.Add(1)
	go func() {
		defer bouncer.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
			}
			mu.Lock()
			ns.Shutdown()
			ns.WaitForShutdown()
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
			ns = newServer(dir, port)
			ns.Start()
			ns.ReadyForConnections(10 * time.Second)
			bounces++
			mu.Unlock()
		}
	}()

	const n = 10000
	for i := 0; i < n; i += 20 {
		for j := i; j < i+20; j++ {
			id := "m-" + strconv.Itoa(j)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := pub.Publish(ctx, "bounce", &bus.Message{ID: id, Type: "T", Source: "test", Key: "k", Body: []byte(id)})
			cancel()
			ledger.Attempt(id, outcome(err))
		}
		time.Sleep(30 * time.Millisecond) // pace: about 15 s of publishing, across several bounces
	}
	close(done)
	bouncer.Wait()
	waitDrained(t, ledger, 60*time.Second)
	r := ledger.Check()
	t.Logf("BRK-RESTART-NO-LOSS seed %d, %d bounces: %s", seed, bounces, r)
	if r.Lost != 0 || r.Unexpected != 0 {
		t.Errorf("lost %d (e.g. %v), unexpected %d; want 0 and 0", r.Lost, r.LostIDs, r.Unexpected)
	}
	if bounces < 3 {
		t.Errorf("only %d bounces happened; the run proves little", bounces)
	}
}

// TestKill9Broker is BRK-KILL9-BROKER: the broker runs as its own process
// and is killed with SIGKILL 5 times while 4 publishers publish with a 2 s
// ack timeout; after the last restart every acknowledged message must be
// read.
func TestKill9Broker(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s fault run; skipped with -short")
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 9))
	dir, port := t.TempDir(), freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("NATSBUS_TEST_SERVER=%s,%d", dir, port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				return cmd
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("broker process did not listen within 15s")
		return nil
	}
	srv := start()
	defer func() { _ = srv.Process.Kill(); _, _ = srv.Process.Wait() }()

	ledger := bustest.NewLedger()
	setup, err := natsbus.Connect(url, natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Publish(context.Background(), "killed", &bus.Message{ID: "warm-up", Type: "T", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	ledger.Attempt("warm-up", bustest.OK)
	stopConsumer := consume(t, url, "killed", ledger)
	defer stopConsumer()

	ctx, stop := context.WithCancel(context.Background())
	var pubs sync.WaitGroup
	for p := range 4 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			b, err := natsbus.Connect(url, natsbus.Config{})
			if err != nil {
				t.Error(err)
				return
			}
			defer b.Close()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("p%d-%d", p, i)
				pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := b.Publish(pctx, "killed", &bus.Message{ID: id, Type: "T", Source: "test", Key: strconv.Itoa(p), Body: []byte(id)})
				cancel()
				ledger.Attempt(id, outcome(err))
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	kills := 0
	for range 5 {
		time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
		if err := srv.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		_, _ = srv.Process.Wait()
		kills++
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		srv = start()
	}
	time.Sleep(time.Second)
	stop()
	pubs.Wait()
	waitDrained(t, ledger, 60*time.Second)
	r := ledger.Check()
	t.Logf("BRK-KILL9-BROKER seed %d, %d kills: %s", seed, kills, r)
	if r.Lost != 0 || r.Unexpected != 0 {
		t.Errorf("lost %d (e.g. %v), unexpected %d; want 0 and 0", r.Lost, r.LostIDs, r.Unexpected)
	}
}

// TestPoisonGoesToDeadLetters is BRK-POISON-DLQ: one message in 1,000
// always fails; it is dead-lettered after 5 deliveries, the other 999 are
// handled, and the good messages' latency is reported next to a run
// without poison in the same test.
func TestPoisonGoesToDeadLetters(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short")
	}
	ns := natstest.Start(t, t.TempDir())
	b, err := natsbus.Connect(ns.ClientURL(), natsbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()

	run := func(topic string, poisonAt int) (good int, dead int, p99 time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		deadc := 0
		dsub, err := b.Subscribe(ctx, bus.DeadLetterTopic, "dlq-"+topic, func(_ context.Context, m *bus.Message) error {
			if m.Headers[bus.HeaderDLQTopic] == topic {
				mu.Lock()
				deadc++
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer dsub.Close()
		h := bus.Chain(func(_ context.Context, m *bus.Message) error {
			if m.Type == "Poison" {
				return errors.New("cannot handle")
			}
			sent, _ := time.Parse(time.RFC3339Nano, string(m.Body))
			mu.Lock()
			lat = append(lat, time.Since(sent))
			mu.Unlock()
			return nil
		}, bus.DeadLetter(b, "g", 5, nil))
		sub, err := b.Subscribe(ctx, topic, "g", h)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for i := range 1000 {
			m := &bus.Message{ID: fmt.Sprintf("%s-%d", topic, i), Type: "Good", Source: "test", Key: strconv.Itoa(i % 16), Body: []byte(time.Now().Format(time.RFC3339Nano))}
			if i == poisonAt {
				m.Type = "Poison"
			}
			if err := b.Publish(ctx, topic, m); err != nil {
				t.Fatal(err)
			}
		}
		want := 1000
		if poisonAt >= 0 {
			want = 999
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			good, dead = len(lat), deadc
			mu.Unlock()
			if (good >= want && (poisonAt < 0 || dead >= 1)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) > 0 {
			p99 = lat[len(lat)*99/100]
		}
		return good, dead, p99
	}
	cleanGood, _, cleanP99 := run("clean", -1)
	good, dead, p99 := run("poisoned", 100)
	t.Logf("BRK-POISON-DLQ: good handled %d of 999, dead letters %d; p99 publish-to-handled %v with the poison, %v without", good, dead, p99, cleanP99)
	if cleanGood != 1000 || good != 999 || dead != 1 {
		t.Errorf("clean run handled %d of 1000; poisoned run handled %d of 999 with %d dead letters; want all and exactly 1", cleanGood, good, dead)
	}
}
