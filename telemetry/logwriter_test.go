package telemetry_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/junction-go/junction/telemetry"
)

// slowWriter records each Write it gets; until open is closed, a Write
// does not return, as into a full pipe.
type slowWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	open   chan struct{}
}

func (s *slowWriter) Write(p []byte) (int, error) {
	<-s.open
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

// TestLogWriterKeepsEveryLine: lines written from many goroutines all
// arrive, each whole and in each writer's order, and while the underlying
// writer is held up they are written together in fewer writes than lines.
func TestLogWriterKeepsEveryLine(t *testing.T) {
	out := &slowWriter{open: make(chan struct{})}
	w := telemetry.NewLogWriter(out) // the first write waits: the rest gather meanwhile
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "{\"g\":%d,\"i\":%d,\"pad\":%q}\n", g, i, strings.Repeat("x", i%50))
			}
		})
	}
	wg.Wait()
	close(out.open)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines arrived, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(l, "{\"g\":%d,\"i\":%d,\"pad\":%q}", &g, &i, &pad); err != nil || len(pad) != i%50 {
			t.Fatalf("a line arrived broken: %q (%v)", l, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d's line %d arrived where %d was due", g, i, next[g])
		}
		next[g]++
	}
	if out.writes >= writers*lines {
		t.Errorf("%d writes for %d lines: nothing was gathered", out.writes, writers*lines)
	}
	t.Logf("%d lines in %d writes", writers*lines, out.writes)

	// After Close, a line goes straight through.
	fmt.Fprintln(w, "late")
	if !strings.HasSuffix(out.buf.String(), "late\n") {
		t.Errorf("a line written after Close was not written")
	}
}

// TestLogWriterBoundsMemory: with the underlying writer stuck, writers
// wait once a megabyte is waiting (beside the write in progress) instead
// of gathering without end, and go on once it moves.
func TestLogWriterBoundsMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &slowWriter{open: make(chan struct{})}
		w := telemetry.NewLogWriter(out)
		line := []byte(strings.Repeat("y", 1023) + "\n")
		var taken atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 4096 { // 4 MiB
				w.Write(line)
				taken.Add(1)
			}
		}()
		// Every goroutine is stuck now: the writer in the underlying
		// Write, the line writer waiting for room. What was taken is what
		// is being written and at most a megabyte waiting.
		synctest.Wait()
		if n := taken.Load(); n < 1024 || n > 2048+1 {
			t.Errorf("%d KiB were taken while nothing could be written, want 1-2 MiB", n)
		}
		close(out.open)
		<-done
		w.Close()
		if got := out.buf.Len(); got != 4096*len(line) {
			t.Errorf("%d bytes arrived, want %d", got, 4096*len(line))
		}
	})
}

// TestLogWriterFlush: Flush returns only once every line written before it
// has reached the underlying writer.
func TestLogWriterFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &slowWriter{open: make(chan struct{})}
		w := telemetry.NewLogWriter(out)
		for i := range 100 {
			fmt.Fprintf(w, "line %d\n", i)
		}
		flushed := make(chan struct{})
		go func() { w.Flush(); close(flushed) }()
		synctest.Wait()
		select {
		case <-flushed:
			t.Fatal("Flush returned while nothing could be written")
		default:
		}
		close(out.open)
		<-flushed
		out.mu.Lock()
		got := strings.Count(out.buf.String(), "\n")
		out.mu.Unlock()
		if got != 100 {
			t.Errorf("%d lines written when Flush returned, want 100", got)
		}
		w.Close()
	})
}
