package telemetry

import (
	"io"
	"sync"
)

// LogWriter takes a process's log lines off the paths that write them: a
// Write copies the line into memory and returns, and one goroutine writes
// what has gathered to the underlying writer, as one write while lines
// keep coming (the way group commit batches transactions). A quiet process
// still gets each line out at once, as it is not held for a timer; a busy
// one makes one system call, and its reader (a terminal, up's supervisor)
// one read, for many lines, where an access log made one of each per
// request.
//
// What a crash can lose is the lines of the write in progress: kill -9
// takes them with it, where an unbuffered writer would have lost none.
// A panic's own message does not pass here (the runtime writes it to the
// file descriptor), and Close writes out everything before a process
// exits. When the underlying writer is slower than the lines come, Write
// waits once maxPending bytes are waiting, so memory stays bounded and
// nothing is dropped (a process holds at most the write in progress and
// maxPending waiting).
//
// It is safe for concurrent use; each Write's bytes stay together.
type LogWriter struct {
	out io.Writer

	mu      sync.Mutex
	room    *sync.Cond // signalled when pending was taken, and when written
	pending []byte
	spare   []byte
	closed  bool
	// queued and written count bytes, for Flush.
	queued, written int64

	wake chan struct{}
	done chan struct{}
}

// maxPending is how many bytes may wait before Write blocks.
const maxPending = 1 << 20

// NewLogWriter returns a LogWriter writing to out; Close it before the
// process exits.
func NewLogWriter(out io.Writer) *LogWriter {
	w := &LogWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Write queues p; after Close it writes p through, once what was queued is
// written.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.pending) >= maxPending && !w.closed {
		w.room.Wait()
	}
	if w.closed {
		// After the lines queued before Close, and never beside them.
		w.mu.Unlock()
		<-w.done
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.queued += int64(len(p))
	select { // under mu, so Close cannot have closed wake
	case w.wake <- struct{}{}:
	default: // the writer is awake already and will see it
	}
	w.mu.Unlock()
	return len(p), nil
}

// Flush returns once every line written before it is written out: call
// it before a process ends itself without Close (a fault test's kill -9).
func (w *LogWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for target := w.queued; w.written < target && !w.closed; {
		w.room.Wait()
	}
}

// Close writes out what is waiting and has later writes go straight
// through; it returns once the waiting lines are written.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.room.Broadcast()
	close(w.wake)
	w.mu.Unlock()
	<-w.done
	return nil
}

func (w *LogWriter) run() {
	defer close(w.done)
	for range w.wake {
		for {
			w.mu.Lock()
			if len(w.pending) == 0 {
				w.mu.Unlock()
				break
			}
			// The two buffers take turns: lines gather in one while the
			// other is written.
			buf := w.pending
			w.pending = w.spare[:0]
			w.room.Broadcast()
			w.mu.Unlock()
			// An error has nowhere better to go than the log it failed
			// to write: the lines are dropped, as a full disk would.
			_, _ = w.out.Write(buf)
			n := int64(len(buf))
			if cap(buf) > 4*maxPending { // one burst does not keep its size
				buf = nil
			}
			w.mu.Lock()
			w.written += n
			w.spare = buf[:0]
			w.room.Broadcast()
			w.mu.Unlock()
		}
	}
}
