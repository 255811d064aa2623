// Package supervisor runs a set of child processes as one system: it starts
// them, prefixes every line they write with their name, restarts one that
// dies (with backoff), and at stop terminates them in reverse order of their
// tier, politely first (SIGTERM) and then by force.
package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
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
	// Tier orders the stop: higher tiers stop first, and a tier is stopped
	// only once every higher one has exited.
	Tier int
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

// Run starts every child in order and keeps them running until ctx is done,
// then stops them and returns once every one has exited.
func (s *Supervisor) Run(ctx context.Context, specs []Spec) error {
	if s.StopTimeout <= 0 {
		s.StopTimeout = 10 * time.Second
	}
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	s.mu.Lock()
	s.pids = map[string]int{}
	s.mu.Unlock()

	tiers := map[int][]*child{}
	var order []int
	var wg sync.WaitGroup
	for i, spec := range specs {
		c := &child{spec: spec, sup: s, color: colors[i%len(colors)], stop: make(chan struct{}), done: make(chan struct{})}
		if _, ok := tiers[spec.Tier]; !ok {
			order = append(order, spec.Tier)
		}
		tiers[spec.Tier] = append(tiers[spec.Tier], c)
		wg.Add(1)
		go func() { defer wg.Done(); c.run() }()
	}
	<-ctx.Done()
	// Stop tiers from the highest down, each after the ones above it.
	for len(order) > 0 {
		hi := 0
		for i, t := range order {
			if t > order[hi] {
				hi = i
			}
		}
		tier := order[hi]
		order = append(order[:hi], order[hi+1:]...)
		for _, c := range tiers[tier] {
			close(c.stop)
		}
		for _, c := range tiers[tier] {
			<-c.done
		}
	}
	wg.Wait()
	return nil
}

var colors = []string{"\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m", "\x1b[96m", "\x1b[93m", "\x1b[92m", "\x1b[95m"}

type child struct {
	spec  Spec
	sup   *Supervisor
	color string
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
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := fmt.Sprintf("%-20s| ", c.spec.Name)
	if c.sup.Color {
		prefix = c.color + prefix + "\x1b[0m"
	}
	for sc.Scan() {
		c.sup.outMu.Lock()
		_, _ = io.WriteString(c.sup.Out, prefix+sc.Text()+"\n")
		c.sup.outMu.Unlock()
	}
	// A line longer than the buffer ends the scan; keep draining so the
	// child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}
