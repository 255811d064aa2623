package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/junction-go/junction/internal/supervisor"
	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// TestMain doubles as the child process: with SUPERVISOR_TEST_CHILD set, the
// test binary behaves as a child instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISOR_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "polite":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("hello from", os.Getpid())
		<-sig
		fmt.Println("bye")
		os.Exit(0)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("hello from", os.Getpid())
		// Asleep, not blocked: a bare select{} with nothing else running is
		// a deadlock the runtime ends (exit 2), and the child is restarted.
		for {
			time.Sleep(time.Hour)
		}
	}
}

func child(name, kind string, tier int) supervisor.Spec {
	return supervisor.Spec{Name: name, Path: os.Args[0], Env: append(os.Environ(), "SUPERVISOR_TEST_CHILD="+kind), Tier: tier}
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

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestRestartsADeadChildAndStopsAll(t *testing.T) {
	out := &telemetrytest.Buffer{}
	var exits sync.Map
	s := &supervisor.Supervisor{
		Out:    out,
		OnExit: func(spec supervisor.Spec, _ error) { exits.Store(spec.Name, true) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, []supervisor.Spec{child("alpha", "polite", 0), child("beta", "polite", 1)}) }()

	waitFor(t, "both children running", func() bool { return len(s.PIDs()) == 2 })
	waitFor(t, "both children ready, their output prefixed", func() bool {
		o := out.String()
		return strings.Contains(o, "alpha               | hello from") && strings.Contains(o, "beta                | hello from")
	})
	old := s.PIDs()["beta"]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "beta restarted", func() bool { p := s.PIDs()["beta"]; return p != 0 && p != old })
	// Wait until the new beta is up (it says hello once it handles SIGTERM).
	waitFor(t, "restarted beta ready", func() bool { return strings.Count(out.String(), "| hello from") == 3 })
	if _, ok := exits.Load("beta"); !ok {
		t.Error("OnExit was not called for beta")
	}

	pids := s.PIDs()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still alive after Run returned", name, pid)
		}
	}
	if n := strings.Count(out.String(), "| bye"); n != 2 {
		t.Errorf("children that stopped politely = %d, want 2\n%s", n, out.String())
	}
}

func TestKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	s := &supervisor.Supervisor{Out: &telemetrytest.Buffer{}, StopTimeout: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, []supervisor.Spec{child("mule", "stubborn", 0)}) }()
	waitFor(t, "child running", func() bool { return len(s.PIDs()) == 1 })
	pid := s.PIDs()["mule"]
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the stop timeout")
	}
	if alive(pid) {
		t.Errorf("stubborn child %d still alive", pid)
	}
}

func TestStartsATierOnceTheOneBelowIsReady(t *testing.T) {
	var baseReady atomic.Bool
	base := child("base", "polite", 0)
	base.Ready = func(context.Context) error {
		if !baseReady.Load() {
			return errors.New("not yet")
		}
		return nil
	}
	var logs telemetrytest.Buffer
	s := &supervisor.Supervisor{Out: &telemetrytest.Buffer{}, Logf: func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, []supervisor.Spec{child("upper", "polite", 1), base}) }()

	waitFor(t, "base running", func() bool { return s.PIDs()["base"] != 0 })
	waitFor(t, "the wait reported", func() bool { return strings.Contains(logs.String(), "waiting for base") })
	if pid := s.PIDs()["upper"]; pid != 0 {
		t.Fatalf("upper started (pid %d) before base was ready", pid)
	}
	baseReady.Store(true)
	waitFor(t, "upper running once base is ready", func() bool { return s.PIDs()["upper"] != 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAStopWhileATierWaitsNeverStartsTheRest(t *testing.T) {
	base := child("base", "polite", 0)
	base.Ready = func(context.Context) error { return errors.New("never") }
	out := &telemetrytest.Buffer{}
	s := &supervisor.Supervisor{Out: out}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, []supervisor.Spec{base, child("upper", "polite", 1)}) }()
	waitFor(t, "base running", func() bool { return s.PIDs()["base"] != 0 })
	pid := s.PIDs()["base"]
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of a stop while a tier was waiting")
	}
	if alive(pid) {
		t.Errorf("base (pid %d) still alive", pid)
	}
	if strings.Contains(out.String(), "upper") {
		t.Errorf("upper was started:\n%s", out.String())
	}
}

func TestLinesOfAllChildrenStartInOneColumn(t *testing.T) {
	out := &telemetrytest.Buffer{}
	s := &supervisor.Supervisor{Out: out}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	long := "a-name-longer-than-twenty-characters"
	go func() { done <- s.Run(ctx, []supervisor.Spec{child("short", "polite", 0), child(long, "polite", 0)}) }()
	waitFor(t, "both children said hello", func() bool { return strings.Count(out.String(), "| hello from") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	col := -1
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		i := strings.Index(line, "| ")
		if i < 0 {
			t.Fatalf("line without a prefix: %q", line)
		}
		if col == -1 {
			col = i
		}
		if i != col {
			t.Errorf("line %q starts at column %d, others at %d", line, i+2, col+2)
		}
	}
	if col != len(long)+1 {
		t.Errorf("name column is %d wide, want %d (the longest name and a space)", col, len(long)+1)
	}
}
