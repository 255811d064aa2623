package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// TestStartsCleanlyEveryTime starts `junction up` on a fresh data folder
// 30 times in a row, then 10 more times with every core kept busy by a CPU
// hog. Each start must print its ready block within 10 s with no process
// having exited (no crash loop while the broker comes up) and no ERROR
// line; each stop must leave no process of the binary behind.
func TestStartsCleanlyEveryTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system 40 times")
	}
	for i := range 40 {
		if i == 30 {
			stop := hogCPUs()
			defer stop()
		}
		s := startSystem(t, t.TempDir())
		if s.Ready > 10*time.Second {
			t.Errorf("start %d: ready after %v, want within 10s", i+1, s.Ready)
		}
		s.stop(t)
		for _, line := range strings.Split(s.out.String(), "\n") {
			if strings.Contains(line, "exited (") || strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("start %d: %s", i+1, line)
			}
		}
		if pids := processesOf(binary); len(pids) > 0 {
			t.Fatalf("start %d: processes %v still running after up stopped", i+1, pids)
		}
		if t.Failed() {
			t.Fatalf("start %d of 40 was not clean; its output:\n%s", i+1, tail(s.out.String(), 80))
		}
	}
}

// TestStopWhileStarting stops `junction up` as soon as its broker starts,
// before the system is ready: it must be gone, every child with it,
// within 5 s.
func TestStopWhileStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the system")
	}
	for i := range 5 {
		cmd := exec.Command(binary, "up", "--data", t.TempDir(), "--port", "0")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		seen := &telemetrytest.Buffer{}
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "broker-1") {
			seen.Write([]byte(sc.Text() + "\n"))
		}
		go func() { _, _ = io.Copy(seen, out) }()
		stopped := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stop %d: junction up exited with %v", i+1, err)
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("stop %d: junction up still running 5s after SIGTERM; its output:\n%s", i+1, tail(seen.String(), 60))
		}
		t.Logf("stop %d while starting took %v", i+1, time.Since(stopped).Round(time.Millisecond))
		if pids := processesOf(binary); len(pids) > 0 {
			t.Fatalf("stop %d: processes %v still running after up stopped", i+1, pids)
		}
	}
}

// hogCPUs keeps every core busy until the returned function is called.
func hogCPUs() (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n%1_000_000 == 0 {
					select {
					case <-quit:
						return
					default:
					}
				}
			}
		}()
	}
	return func() { close(quit); wg.Wait() }
}

// TestServicesRideOutABrokerRestart kills the embedded broker (SIGKILL)
// while orders flow: the supervisor restarts it on the same port, every
// service reconnects by itself (none exits), what was published meanwhile
// waits in the outboxes, and every order ends.
func TestServicesRideOutABrokerRestart(t *testing.T) {
	s := startShop(t, nil, nil)
	loaded := make(chan []*attempt, 1)
	flowing := make(chan struct{}) // closed once 40 orders were answered: the fault strikes mid-load
	var once sync.Once
	go func() {
		loaded <- s.load(200, 20, func(int) []line { return []line{{SKU: "LOAD-A", Quantity: 1}} }, anyCard, func(done int) {
			if done >= 40 {
				once.Do(func() { close(flowing) })
			}
		})
	}()
	<-flowing
	pid := s.pid("broker")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the broker back", func() error {
		if p := s.pid("broker"); p == pid {
			return fmt.Errorf("still the killed broker's registration")
		}
		return nil
	})
	rep, _ := s.check(<-loaded, 0, map[string]int{"broker": 1})
	if rep.Stuck > 0 {
		t.Errorf("%d orders did not end after the broker came back", rep.Stuck)
	}
	for _, line := range strings.Split(s.sys.out.String(), "\n") {
		if strings.Contains(line, " exited (") && !strings.Contains(line, "broker-1 exited") {
			t.Errorf("a service exited while the broker was away: %s", line)
		}
	}
}
