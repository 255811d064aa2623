// Package supervisor runs a set of child processes as one system: it starts
// them tier by tier (a tier once every child of the tiers below is ready),
// prefixes every line they write with their name, restarts one that dies
// (with backoff), and at stop terminates them in reverse order of their
// tier, politely first (SIGTERM) and then by force.
package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Spec describes one child process.
type Spec struct {
	// Name prefixes the child's output and names it in messages.
	Name string
	Path string
	Args []string
	Env  []string
	// ExtraFiles are inherited as file descriptors 3, 4, …
	ExtraFiles []*os.File
	// Tier orders the start and the stop: a tier starts once every child
	// of the lower tiers is ready, and at stop higher tiers stop first, a
	// tier only once every higher one has exited.
	Tier int
	// Ready, when set, reports whether the child can serve the tiers above
	// it (its port answers, it is registered). It is polled after the
	// child starts until it returns nil; nil means ready once started.
	Ready func(ctx context.Context) error
}

// Supervisor runs children. Its fields must be set before Run.
type Supervisor struct {
	// Out receives every child's output, one prefixed line at a time.
	Out io.Writer
	// Color prefixes names with ANSI colours.
	Color bool
	// StopTimeout is how long a child may take to stop after SIGTERM before
	// it is killed; 10 s when zero.
	StopTimeout time.Duration
	// OnExit, when set, is called after a child exits unexpectedly, before
	// it is restarted.
	OnExit func(spec Spec, err error)
	// Logf reports the supervisor's own events.
	Logf func(format string, args ...any)
	// ReadyPoll is how often a starting child's Ready is asked; 50 ms when
	// zero. A child still not ready after a second is reported by Logf
	// once, as a wait, not an error.
	ReadyPoll time.Duration

	outMu sync.Mutex
	mu    sync.Mutex
	pids  map[string]int
}

// PIDs returns the process id of every running child, by name.
func (s *Supervisor) PIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.pids))
	for k, v := range s.pids {
		out[k] = v
	}
	return out
}

// Run starts the children tier by tier, lowest first, and keeps them
// running until ctx is done, then stops them and returns once every one has
// exited. A tier starts only once every child below it is ready; if ctx
// ends before, the tiers not yet started never start.
func (s *Supervisor) Run(ctx context.Context, specs []Spec) error {
	if s.StopTimeout <= 0 {
		s.StopTimeout = 10 * time.Second
	}
	if s.ReadyPoll <= 0 {
		s.ReadyPoll = 50 * time.Millisecond
	}
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	s.mu.Lock()
	s.pids = map[string]int{}
	s.mu.Unlock()

	// Every prefix has one width, wide enough for the longest name, so the
	// lines of all children start in the same column.
	width := 20
	for _, spec := range specs {
		width = max(width, len(spec.Name)+1)
	}
	tiers := map[int][]*child{}
	var order []int
	for i, spec := range specs {
		c := &child{spec: spec, sup: s, color: colors[i%len(colors)], width: width, stop: make(chan struct{}), done: make(chan struct{})}
		if _, ok := tiers[spec.Tier]; !ok {
			order = append(order, spec.Tier)
		}
		tiers[spec.Tier] = append(tiers[spec.Tier], c)
	}
	slices.Sort(order)
	var wg sync.WaitGroup
	var started []int
	for _, tier := range order {
		if ctx.Err() != nil {
			break
		}
		for _, c := range tiers[tier] {
			wg.Add(1)
			go func() { defer wg.Done(); c.run() }()
		}
		started = append(started, tier)
		for _, c := range tiers[tier] {
			if !s.waitReady(ctx, c) {
				break
			}
		}
	}
	<-ctx.Done()
	// Stop the started tiers from the highest down, each after the ones
	// above it.
	for i := len(started) - 1; i >= 0; i-- {
		for _, c := range tiers[started[i]] {
			close(c.stop)
		}
		for _, c := range tiers[started[i]] {
			<-c.done
		}
	}
	wg.Wait()
	return nil
}

// waitReady polls c's Ready until it passes (true) or ctx ends (false).
func (s *Supervisor) waitReady(ctx context.Context, c *child) bool {
	if c.spec.Ready == nil {
		return true
	}
	t := time.NewTicker(s.ReadyPoll)
	defer t.Stop()
	asked := time.Now()
	reported := false
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.spec.Ready(pctx)
		cancel()
		if err == nil {
			if reported {
				s.Logf("%s is ready", c.spec.Name)
			}
			return true
		}
		if !reported && time.Since(asked) > time.Second {
			s.Logf("waiting for %s before starting what needs it (%v)", c.spec.Name, err)
			reported = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

var colors = []string{"\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m", "\x1b[96m", "\x1b[93m", "\x1b[92m", "\x1b[95m"}

type child struct {
	spec  Spec
	sup   *Supervisor
	color string
	width int // of the name column in the output prefix
	stop  chan struct{}
	done  chan struct{}
}

// run starts the child and restarts it when it dies, until stop is closed.
func (c *child) run() {
	defer close(c.done)
	backoff := 250 * time.Millisecond
	for {
		started := time.Now()
		err := c.once()
		select {
		case <-c.stop:
			return
		default:
		}
		if c.sup.OnExit != nil {
			c.sup.OnExit(c.spec, err)
		}
		// A child that ran a few seconds came up fine: its death is not a
		// crash loop, so it is restarted at once again.
		if time.Since(started) > 3*time.Second {
			backoff = 250 * time.Millisecond
		}
		c.sup.Logf("%s exited (%v); restarting in %v", c.spec.Name, err, backoff)
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// once runs the child until it exits or stop is closed; then it is sent
// SIGTERM and, after StopTimeout, SIGKILL.
func (c *child) once() error {
	cmd := exec.Command(c.spec.Path, c.spec.Args...)
	cmd.Env = c.spec.Env
	cmd.ExtraFiles = c.spec.ExtraFiles
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	c.sup.mu.Lock()
	c.sup.pids[c.spec.Name] = cmd.Process.Pid
	c.sup.mu.Unlock()
	var copying sync.WaitGroup
	copying.Add(2)
	go func() { defer copying.Done(); c.copyLines(stdout) }()
	go func() { defer copying.Done(); c.copyLines(stderr) }()
	exited := make(chan error, 1)
	go func() {
		copying.Wait() // Wait must not run before the pipes are drained.
		exited <- cmd.Wait()
	}()

	var result error
	select {
	case result = <-exited:
	case <-c.stop:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case result = <-exited:
		case <-time.After(c.sup.StopTimeout):
			c.sup.Logf("%s did not stop within %v; killing it", c.spec.Name, c.sup.StopTimeout)
			_ = cmd.Process.Kill()
			result = <-exited
		}
	}
	c.sup.mu.Lock()
	delete(c.sup.pids, c.spec.Name)
	c.sup.mu.Unlock()
	return result
}

func (c *child) copyLines(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	prefix := fmt.Sprintf("%-*s| ", c.width, c.spec.Name)
	if c.sup.Color {
		prefix = c.color + prefix + "\x1b[0m"
	}
	// The lines a read brings go out in one write: a busy child's log
	// costs one write per block, not one per line under the lock.
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out = append(out, prefix...)
			out = append(out, line...)
			if line[len(line)-1] != '\n' {
				out = append(out, '\n') // the end, or a piece of a longer line
			}
		}
		if err == nil && len(out) < 64<<10 && bytes.IndexByte(peekBuffered(br), '\n') >= 0 {
			continue // another whole line is already here
		}
		if len(out) > 0 {
			c.sup.outMu.Lock()
			_, _ = c.sup.Out.Write(out)
			c.sup.outMu.Unlock()
			out = out[:0]
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// peekBuffered is what br holds already, without reading more.
func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}
