package resilience

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// busyServer is a server limit of exactly two in flight, in front of a
// handler that holds every request until release is closed.
type busyServer struct {
	limit   *ServerLimit
	srv     *httptest.Server
	started chan int // the level each held request runs at
	release chan struct{}
}

func newBusyServer(t *testing.T) *busyServer { return newBusyServerLogging(t, nil) }

// newBusyServerLogging is newBusyServer whose limit logs to log.
func newBusyServerLogging(t *testing.T, log *slog.Logger) *busyServer {
	t.Helper()
	b := &busyServer{
		// Calibrated by the test itself, so the refusals follow what it set up.
		limit:   NewServerLimit(ServerLimitConfig{Name: "test", MinLimit: 2, MaxLimit: 2, InitialLimit: 2, CalibrateEvery: time.Hour, Log: log}),
		started: make(chan int, 100),
		release: make(chan struct{}),
	}
	t.Cleanup(b.limit.Close)
	b.srv = httptest.NewServer(rest.Deadline(b.limit.HTTP(func(r *http.Request) bool { return r.URL.Query().Has("wait") })(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.started <- priority.LevelFromContext(r.Context())
		<-b.release
		w.WriteHeader(http.StatusNoContent)
	}))))
	t.Cleanup(b.srv.Close)
	return b
}

type answer struct {
	status     int
	retryAfter string
	took       time.Duration
	err        error
}

// call sends one request with the header given (name, value) and answers
// on the channel returned.
func (b *busyServer) call(path string, header ...string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", b.srv.URL+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
	}()
	return out
}

// full sends the limit's two requests and six more at p, so that its
// queue is at its most (three times the limit), and waits until they are
// in place; the answers come once release is closed.
func (b *busyServer) full(t *testing.T, p Priority) []<-chan answer {
	t.Helper()
	held, _ := b.busy(p)
	for range 6 {
		held = append(held, b.call("/", prio(p)...))
	}
	waitFor(t, "six queued", func() bool { return b.limit.Stats().Queued == 6 })
	return held
}

// busy sends the limit's two requests at p and waits until both run; it
// returns their answers to come and the levels they run at.
func (b *busyServer) busy(p Priority) (held []<-chan answer, levels []int) {
	for range 2 {
		held = append(held, b.call("/", prio(p)...))
	}
	for range 2 {
		levels = append(levels, <-b.started)
	}
	return held, levels
}

// finish lets every held request end and waits for their answers.
func (b *busyServer) finish(held []<-chan answer) {
	close(b.release)
	for _, c := range held {
		<-c
	}
}

// waitFor waits until cond holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func prio(p Priority) []string { return []string{priorityHeader, strconv.Itoa(int(p))} }

func TestServerLimitRefusesNewWorkFirst(t *testing.T) {
	b := newBusyServer(t)
	// Two requests of admitted work fill the limit; five more queue.
	held, levels := b.busy(PriorityAdmitted)
	for _, l := range levels {
		if l < PriorityAdmitted.MinLevel() || l > PriorityAdmitted.MaxLevel() {
			t.Errorf("admitted work runs at level %d, want one of %d-%d", l, PriorityAdmitted.MinLevel(), PriorityAdmitted.MaxLevel())
		}
	}
	for range 5 {
		held = append(held, b.call("/", prio(PriorityAdmitted)...))
	}
	waitFor(t, "five queued", func() bool { return b.limit.Stats().Queued == 5 })
	b.limit.prioritizer.Calibrate()
	if th := b.limit.Stats().Threshold; th < PriorityAdmitted.MinLevel() {
		t.Fatalf("with the queue past twice the limit, the threshold is %d, want admitted work's levels", th)
	}

	// New work is refused at once, with Retry-After; a long poll is not
	// measured and goes through.
	a := <-b.call("/", prio(PriorityNew)...)
	if a.err != nil || a.status != http.StatusServiceUnavailable || a.retryAfter != "1" {
		t.Errorf("new work while admitted work queues: %d (Retry-After %q, err %v), want 503 with Retry-After 1", a.status, a.retryAfter, a.err)
	}
	poll := b.call("/?wait=5s", prio(PriorityNew)...)
	<-b.started
	// Higher work still queues, and everything queued is answered.
	held = append(held, b.call("/", prio(priority.VeryHigh)...))
	waitFor(t, "the sixth queued", func() bool { return b.limit.Stats().Queued == 6 })
	close(b.release)
	for _, c := range append(held, poll) {
		if a := <-c; a.err != nil || a.status != http.StatusNoContent {
			t.Errorf("held or queued request: %d (err %v), want 204", a.status, a.err)
		}
	}
	if st := b.limit.Stats(); st.Refused[PriorityNew] != 1 || st.Refused[PriorityAdmitted] != 0 || st.InFlight != 0 ||
		st.Admitted[PriorityAdmitted] != 7 || st.Admitted[priority.VeryHigh] != 1 || st.Admitted[PriorityNew] != 0 {
		t.Errorf("stats after: %+v, want one refusal of new work, none of admitted, none in flight; 7 admitted and 1 very high let in, the long poll not counted", st)
	}
}

func TestServerLimitPastItsQueueRefusesAll(t *testing.T) {
	var logged telemetrytest.Buffer
	b := newBusyServerLogging(t, slog.New(slog.NewJSONHandler(&logged, nil)))
	held := b.full(t, priority.VeryHigh)
	if a := <-b.call("/", prio(priority.VeryHigh)...); a.status != http.StatusServiceUnavailable {
		t.Errorf("the highest work past three times the limit: %d, want 503", a.status)
	}
	// The refusal is told once, in the next second's line.
	waitFor(t, "the second's line of refusals", func() bool { return strings.Contains(logged.String(), `"other":1`) })
	if line := logged.String(); !strings.Contains(line, "work refused in the last second") || !strings.Contains(line, `"new":0`) || !strings.Contains(line, `"queued":6`) {
		t.Errorf("log = %s, want one line of the refusal, with the queue", line)
	}
	b.finish(held)
}

func TestServerLimitReadsOnlyLevelsItKnows(t *testing.T) {
	b := newBusyServer(t)
	close(b.release)
	for _, h := range [][]string{
		{levelHeader, "500"}, {levelHeader, "-1"}, {levelHeader, "high"},
		{priorityHeader, "5"}, {priorityHeader, "-3"}, {priorityHeader, "x"}, {},
	} {
		a := <-b.call("/", h...)
		l := <-b.started
		if a.status != http.StatusNoContent || l < PriorityDefault.MinLevel() || l > PriorityDefault.MaxLevel() {
			t.Errorf("%q: %d at level %d, want 204 at the default priority's levels", h, a.status, l)
		}
	}
	a := <-b.call("/", levelHeader, "42")
	if l := <-b.started; a.status != http.StatusNoContent || l != 42 {
		t.Errorf("level 42: %d at level %d, want 204 at 42", a.status, l)
	}
}

func TestServerLimitGRPC(t *testing.T) {
	l := NewServerLimit(ServerLimitConfig{Name: "test", MinLimit: 1, MaxLimit: 1, InitialLimit: 1, CalibrateEvery: time.Hour})
	defer l.Close()
	intercept := l.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/inventory.v1.InventoryService/CheckAvailability"}
	release := make(chan struct{})
	var wg sync.WaitGroup
	hold := func(ctx context.Context, _ any) (any, error) { <-release; return nil, nil }
	call := func(md ...string) error {
		_, err := intercept(metadata.NewIncomingContext(context.Background(), metadata.Pairs(md...)), nil, info, hold)
		return err
	}
	for range 1 + 3 { // one in flight, three queued: full
		wg.Go(func() {
			if err := call(levelMD, "350"); err != nil {
				t.Errorf("held call: %v", err)
			}
		})
	}
	waitFor(t, "three queued", func() bool { return l.Stats().Queued == 3 })
	if err := call(priorityMD, "1"); status.Code(err) != codes.Unavailable {
		t.Errorf("new work past the queue: %v, want UNAVAILABLE", err)
	}
	// Health checks are not work.
	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	if _, err := intercept(context.Background(), nil, health, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Errorf("health check while full: %v, want through", err)
	}
	close(release)
	wg.Wait()
	var got int
	if _, err := intercept(metadata.NewIncomingContext(context.Background(), metadata.Pairs(levelMD, "123")), nil, info, func(ctx context.Context, _ any) (any, error) {
		got = priority.LevelFromContext(ctx)
		return nil, nil
	}); err != nil || got != 123 {
		t.Errorf("a call at level 123: %v, at level %d in its context; want through at 123, for the calls it makes", err, got)
	}
}

func TestServerLimitMessagesWaitNotRefused(t *testing.T) {
	b := newBusyServer(t)
	held := b.full(t, priority.VeryHigh)
	handled := make(chan error, 1)
	h := b.limit.Messages(func(ctx context.Context, m *bus.Message) error {
		if l := priority.LevelFromContext(ctx); l != PriorityAdmitted.MaxLevel() {
			t.Errorf("message handled at level %d, want %d", l, PriorityAdmitted.MaxLevel())
		}
		return nil
	})
	go func() { handled <- h(context.Background(), &bus.Message{ID: "m1"}) }()
	waitFor(t, "the message waiting", func() bool { return b.limit.Stats().MessagesWaiting == 1 })
	select {
	case err := <-handled:
		t.Fatalf("a message past the queue was handled (%v) before anything finished; want it to wait", err)
	default:
	}
	b.finish(held)
	if err := <-handled; err != nil {
		t.Errorf("message after the queue drained: %v, want handled", err)
	}
	// A subscription that stops while its message waits redelivers it.
	b2 := newBusyServer(t)
	held2 := b2.full(t, priority.VeryHigh)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		handled <- b2.limit.Messages(func(context.Context, *bus.Message) error { return nil })(ctx, &bus.Message{ID: "m2"})
	}()
	waitFor(t, "the message waiting", func() bool { return b2.limit.Stats().MessagesWaiting == 1 })
	cancel()
	if err := <-handled; err == nil {
		t.Error("message whose subscription stopped while it waited: nil, want an error (redelivered)")
	}
	b2.finish(held2)
}

// TestServerLimitDropsExpiredWork: a request whose deadline passes while
// it waits for a permit is answered 504 then, not worked on later; a
// message whose deadline passes while it waits goes on without a permit,
// for the consumer's SkipExpired to drop.
func TestServerLimitDropsExpiredWork(t *testing.T) {
	b := newBusyServer(t)
	held, _ := b.busy(PriorityAdmitted)
	deadline := time.Now().Add(100 * time.Millisecond)
	a := <-b.call("/", append(prio(priority.VeryHigh), rest.DeadlineHeader, strconv.FormatInt(deadline.UnixNano(), 10))...)
	if a.err != nil || a.status != http.StatusGatewayTimeout {
		t.Errorf("a request whose deadline passed in the queue: %d (err %v), want 504", a.status, a.err)
	}
	if !time.Now().After(deadline) {
		t.Error("answered before its deadline; want it to wait for a permit until then")
	}

	m := &bus.Message{ID: "late", Headers: map[string]string{bus.HeaderDeadline: strconv.FormatInt(time.Now().Add(50*time.Millisecond).UnixNano(), 10)}}
	var late bool
	err := b.limit.Messages(func(ctx context.Context, m *bus.Message) error {
		d, _ := bus.Deadline(m)
		late = !time.Now().Before(d)
		return nil
	})(context.Background(), m)
	if err != nil || !late {
		t.Errorf("a message whose deadline passed while it waited: err %v, handed on past its deadline %v; want nil and true", err, late)
	}
	if st := b.limit.Stats(); st.InFlight != 2 {
		t.Errorf("in flight after the late message: %d, want the 2 held (it took no permit)", st.InFlight)
	}
	b.finish(held)
}

func TestServerLimitTakesAnyBounds(t *testing.T) {
	for _, cfg := range []ServerLimitConfig{
		{MinLimit: 50, MaxLimit: 10}, {MinLimit: 5, InitialLimit: 1}, {MaxLimit: 3, InitialLimit: 30}, {InitialLimit: 7}, {},
	} {
		l := NewServerLimit(cfg)
		lim := l.Stats().Limit
		l.Close()
		lo, hi := max(cfg.MinLimit, 1), cfg.MaxLimit
		if hi == 0 {
			hi = 200
		}
		if lim < int(lo) || lim > int(max(hi, lo)) {
			t.Errorf("%+v: starts at %d, want between its floor %d and its ceiling", cfg, lim, lo)
		}
	}
}
