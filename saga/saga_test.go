package saga_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// crash is what a failpoint panics with to stand for a killed process.
type crash struct{ point string }

// harness drives an engine the way a bus would, reading its commands
// straight from the outbox table, so every test is deterministic.
type harness struct {
	t       *testing.T
	db      *sqldb.DB
	ob      *outbox.Outbox
	clock   *clock
	cfg     saga.Config
	def     *saga.Definition
	engine  *saga.Engine
	lastSeq int64
	// crashAt, when set, makes the failpoint of that name crash on its
	// n-th call (then it is cleared).
	crashAt string
	crashN  int
	crashes int
}

const (
	replies = "test.replies"
	topicA  = "svc-a"
	topicB  = "svc-b"
)

// threeSteps: reserve (undo release) → charge (undo refund) → notify (no
// undo) → ship (undo cancel).
func threeSteps() *saga.Definition {
	return &saga.Definition{
		Name: "order",
		Steps: []saga.Step{
			{Name: "reserve", Do: saga.Action{Topic: topicA, Type: "Reserve"}, Undo: &saga.Action{Topic: topicA, Type: "Release"}, Timeout: time.Second, Attempts: 2},
			{Name: "charge", Do: saga.Action{Topic: topicB, Type: "Charge", Body: func(in *saga.Instance) (any, error) {
				var r struct{ Total int }
				if _, err := in.Result("reserve", &r); err != nil {
					return nil, err
				}
				return map[string]int{"amount": r.Total}, nil
			}}, Undo: &saga.Action{Topic: topicB, Type: "Refund"}, Timeout: time.Second},
			{Name: "notify", Do: saga.Action{Topic: topicA, Type: "Notify"}, Timeout: time.Second},
			{Name: "ship", Do: saga.Action{Topic: topicB, Type: "Ship"}, Undo: &saga.Action{Topic: topicB, Type: "CancelShipment"}, Timeout: time.Second, Attempts: 1},
		},
	}
}

func newHarness(t *testing.T, db *sqldb.DB, def *saga.Definition) *harness {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE ended (id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, ob: ob, def: def, clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	// OnEnd writes the owner's state in the ending transaction; the
	// primary key proves it happens once.
	def.OnEnd = func(ctx context.Context, tx *sql.Tx, in *saga.Instance) error {
		_, err := tx.ExecContext(ctx, db.Dialect.Rebind(`INSERT INTO ended (id, status, reason) VALUES (?, ?, ?)`), in.ID, string(in.Status), in.Reason)
		return err
	}
	h.cfg = saga.Config{ReplyTopic: replies, Source: "test", Now: h.clock.Now, MaxUndoAttempts: 4, MaxBackoff: 4 * time.Second,
		Failpoint: func(p string) {
			if p == h.crashAt {
				h.crashN--
				if h.crashN == 0 {
					h.crashAt = ""
					panic(crash{p})
				}
			}
		}}
	h.restart()
	return h
}

// restart replaces the engine, as a new process would.
func (h *harness) restart() {
	h.t.Helper()
	e, err := saga.New(context.Background(), h.db, h.ob, h.cfg, quiet, h.def)
	if err != nil {
		h.t.Fatal(err)
	}
	h.engine = e
}

// survive runs fn; a failpoint crash restarts the engine and reports true.
func (h *harness) survive(fn func() error) (crashed bool) {
	h.t.Helper()
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(crash); !ok {
				panic(p)
			}
			h.crashes++
			h.restart()
			crashed = true
		}
	}()
	if err := fn(); err != nil {
		h.t.Fatal(err)
	}
	return false
}

func (h *harness) start(id string) {
	h.t.Helper()
	err := h.db.InTx(context.Background(), func(tx *sql.Tx) error {
		return h.engine.Start(context.Background(), tx, "order", id, map[string]string{"customer": "c1"})
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// commands returns the commands written since the last call.
func (h *harness) commands() []*bus.Message {
	h.t.Helper()
	rows, err := h.db.QueryContext(context.Background(), h.db.Dialect.Rebind(`SELECT seq, topic, headers, body FROM outbox WHERE seq > ? ORDER BY seq`), h.lastSeq)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []*bus.Message
	for rows.Next() {
		var topic, headers string
		var body []byte
		if err := rows.Scan(&h.lastSeq, &topic, &headers, &body); err != nil {
			h.t.Fatal(err)
		}
		var hm map[string]string
		if err := json.Unmarshal([]byte(headers), &hm); err != nil {
			h.t.Fatal(err)
		}
		m := bus.FromHeaders(hm, body)
		m.Topic = topic
		out = append(out, m)
	}
	return out
}

// one returns the single new command, failing otherwise.
func (h *harness) one() *bus.Message {
	h.t.Helper()
	cs := h.commands()
	if len(cs) != 1 {
		h.t.Fatalf("new commands = %v, want exactly one", describe(cs))
	}
	return cs[0]
}

func describe(ms []*bus.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type+"#"+m.Headers[saga.HeaderAttempt])
	}
	return out
}

func (h *harness) answer(cmd *bus.Message, ok bool, reason string, data any) *bus.Message {
	h.t.Helper()
	c, err := saga.ParseCommand(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	r, err := c.Reply(ok, reason, data)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// deliver hands a reply to the engine at least once: after a crash the
// bus would deliver it again.
func (h *harness) deliver(r *bus.Message) {
	h.t.Helper()
	for h.survive(func() error { return h.engine.HandleReply(context.Background(), r) }) {
	}
}

func (h *harness) fireDue() {
	h.t.Helper()
	for h.survive(func() error { _, err := h.engine.FireDue(context.Background()); return err }) {
	}
}

func (h *harness) get(id string) *saga.Instance {
	h.t.Helper()
	in, err := h.engine.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return in
}

func (h *harness) ended(id string) (status, reason string) {
	h.t.Helper()
	err := h.db.QueryRowContext(context.Background(), h.db.Dialect.Rebind(`SELECT status, reason FROM ended WHERE id = ?`), id).Scan(&status, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ""
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return status, reason
}

func kinds(in *saga.Instance) []string {
	var out []string
	for _, e := range in.History {
		s := string(e.Kind)
		if e.Step != "" {
			s = e.Step + ":" + s
		}
		out = append(out, s)
	}
	return out
}

func TestEveryStepSucceedsAndTheSagaCompletes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		reserve := h.one()
		if reserve.Type != "Reserve" || reserve.Topic != topicA || reserve.Key != "o1" || reserve.Headers[bus.HeaderReplyTo] != replies {
			t.Fatalf("first command = %s to %s key %q, want Reserve to %s keyed o1 replying to %s", reserve.Type, reserve.Topic, reserve.Key, topicA, replies)
		}
		h.deliver(h.answer(reserve, true, "", map[string]int{"Total": 4200}))
		charge := h.one()
		if got, want := string(charge.Body), `{"amount":4200}`; got != want {
			t.Errorf("charge body = %s, want %s (built from reserve's result)", got, want)
		}
		h.deliver(h.answer(charge, true, "", nil))
		h.deliver(h.answer(h.one(), true, "", nil))
		h.deliver(h.answer(h.one(), true, "", nil))
		if cs := h.commands(); len(cs) != 0 {
			t.Fatalf("commands after the last step = %v, want none", describe(cs))
		}
		in := h.get("o1")
		if in.Status != saga.Completed || !in.DeadlineAt.IsZero() {
			t.Errorf("status = %s deadline %v, want completed with no timer", in.Status, in.DeadlineAt)
		}
		want := []string{"started", "reserve:sent", "reserve:succeeded", "charge:sent", "charge:succeeded", "notify:sent", "notify:succeeded", "ship:sent", "ship:succeeded", "completed"}
		if diff := cmp.Diff(want, kinds(in)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		if st, _ := h.ended("o1"); st != "completed" {
			t.Errorf("OnEnd status = %q, want completed", st)
		}
	})
}

func TestARefusalCompensatesTheStepsBeforeItInReverseOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		h.deliver(h.answer(h.one(), true, "", nil)) // reserve
		h.deliver(h.answer(h.one(), true, "", nil)) // charge
		h.deliver(h.answer(h.one(), true, "", nil)) // notify
		h.deliver(h.answer(h.one(), false, "no courier", nil))
		var undone []string
		for range 2 {
			c := h.one()
			undone = append(undone, c.Type)
			h.deliver(h.answer(c, true, "", nil))
		}
		// ship refused (no effect, no undo); notify has no undo.
		if want := []string{"Refund", "Release"}; !slices.Equal(undone, want) {
			t.Errorf("compensations = %v, want %v", undone, want)
		}
		in := h.get("o1")
		if in.Status != saga.Compensated || in.Reason != "no courier" {
			t.Errorf("status = %s reason %q, want compensated, no courier", in.Status, in.Reason)
		}
		if st, reason := h.ended("o1"); st != "compensated" || reason != "no courier" {
			t.Errorf("OnEnd = %s %q, want compensated with the reason", st, reason)
		}
	})
}

func TestATimeoutResendsWithTheSameKeyThenCompensatesTheSilentStep(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		first := h.one()
		h.clock.Add(999 * time.Millisecond)
		h.fireDue()
		if cs := h.commands(); len(cs) != 0 {
			t.Fatalf("before the timeout: %v, want nothing", describe(cs))
		}
		h.clock.Add(time.Millisecond)
		h.fireDue()
		second := h.one()
		if second.Type != "Reserve" || second.ID == first.ID || second.Headers[saga.HeaderKey] != first.Headers[saga.HeaderKey] {
			t.Fatalf("retry = %s id %s key %s, want Reserve with a new id and key %s", second.Type, second.ID, second.Headers[saga.HeaderKey], first.Headers[saga.HeaderKey])
		}
		h.clock.Add(time.Second)
		h.fireDue() // Attempts: 2 → the step failed; it may have reserved, so release.
		undo := h.one()
		if undo.Type != "Release" {
			t.Fatalf("after the last attempt = %s, want Release", undo.Type)
		}
		// The first attempt's reply arrives late: ignored.
		h.deliver(h.answer(first, true, "", nil))
		if cs := h.commands(); len(cs) != 0 {
			t.Fatalf("a late reply sent %v, want nothing", describe(cs))
		}
		h.deliver(h.answer(undo, true, "", nil))
		in := h.get("o1")
		if in.Status != saga.Compensated || !strings.Contains(in.Reason, "reserve") {
			t.Errorf("status = %s reason %q, want compensated because reserve did not answer", in.Status, in.Reason)
		}
		want := []string{"started", "reserve:sent", "reserve:timed_out", "reserve:sent", "reserve:timed_out", "reserve:undo_sent", "reserve:ignored", "reserve:undone", "compensated"}
		if diff := cmp.Diff(want, kinds(in)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		// Even later, after the end: still ignored, still compensated.
		h.deliver(h.answer(second, true, "", nil))
		if in := h.get("o1"); in.Status != saga.Compensated {
			t.Errorf("after a reply to an ended saga: %s, want compensated", in.Status)
		}
	})
}

func TestADuplicateReplyMovesTheSagaOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		r := h.answer(h.one(), true, "", nil)
		h.deliver(r)
		charge := h.one()
		h.deliver(r)
		if cs := h.commands(); len(cs) != 0 {
			t.Fatalf("duplicate reply sent %v, want nothing", describe(cs))
		}
		if in := h.get("o1"); in.Status != saga.Running || in.Step != 1 {
			t.Errorf("after a duplicate: %s at step %d, want running at 1", in.Status, in.Step)
		}
		// A refusal that is duplicated compensates once.
		refusal := h.answer(charge, false, "card declined", nil)
		h.deliver(refusal)
		release := h.one()
		h.deliver(refusal)
		if cs := h.commands(); len(cs) != 0 {
			t.Fatalf("duplicate refusal sent %v, want nothing", describe(cs))
		}
		h.deliver(h.answer(release, true, "", nil))
		if st, reason := h.ended("o1"); st != "compensated" || reason != "card declined" {
			t.Errorf("ended %s %q, want compensated, card declined", st, reason)
		}
	})
}

func TestARefusedCompensationIsRetriedWithBackoffThenParked(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		h.deliver(h.answer(h.one(), true, "", nil))
		h.deliver(h.answer(h.one(), false, "declined", nil))
		release := h.one()
		var gaps []time.Duration
		last := h.clock.Now()
		for attempt := 1; ; attempt++ {
			h.deliver(h.answer(release, false, "store busy", nil))
			// Step the clock until the retry goes out.
			for {
				h.clock.Add(250 * time.Millisecond)
				h.fireDue()
				if cs := h.commands(); len(cs) > 0 {
					release = cs[0]
					gaps = append(gaps, h.clock.Now().Sub(last))
					last = h.clock.Now()
					break
				}
				if in := h.get("o1"); in.Status.Terminal() {
					break
				}
			}
			if in := h.get("o1"); in.Status.Terminal() {
				break
			}
			if attempt > 10 {
				t.Fatal("never parked")
			}
		}
		if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(gaps, want) {
			t.Errorf("gaps between compensation attempts = %v, want %v (doubling from the timeout, capped)", gaps, want)
		}
		if st, _ := h.ended("o1"); st != string(saga.NeedsAttention) {
			t.Errorf("ended %q, want needs_attention after MaxUndoAttempts", st)
		}
	})
}

func TestAbortUndoesTheStepAwaitingItsReply(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		h.start("o1")
		h.deliver(h.answer(h.one(), true, "", nil))
		charge := h.one()
		if err := h.engine.Abort(context.Background(), "o1", "cancelled by the customer"); err != nil {
			t.Fatal(err)
		}
		refund := h.one()
		if refund.Type != "Refund" {
			t.Fatalf("after abort = %s, want Refund of the charge in flight", refund.Type)
		}
		h.deliver(h.answer(charge, true, "", nil)) // late: ignored
		h.deliver(h.answer(refund, true, "", nil))
		release := h.one()
		h.deliver(h.answer(release, true, "", nil))
		if st, reason := h.ended("o1"); st != "compensated" || reason != "cancelled by the customer" {
			t.Errorf("ended %s %q", st, reason)
		}
		if err := h.engine.Abort(context.Background(), "o1", "again"); !errors.Is(err, saga.ErrEnded) {
			t.Errorf("Abort of an ended saga = %v, want ErrEnded", err)
		}
		if err := h.engine.Abort(context.Background(), "nope", "x"); !errors.Is(err, saga.ErrNotFound) {
			t.Errorf("Abort of an unknown saga = %v, want ErrNotFound", err)
		}
	})
}

// TestACrashAtEveryTransitionResumes kills the engine (a panic standing
// for kill -9, rolling back the open transaction) at every failpoint, at
// every occurrence, in a run that succeeds, one that compensates and one
// that times out; the restarted engine must end each the same way, with
// the owner's end recorded once and no step sent that the script does not
// expect.
func TestACrashAtEveryTransitionResumes(t *testing.T) {
	points := []string{"saga.reply.beforeCommit", "saga.reply.afterCommit", "saga.timer.beforeCommit", "saga.timer.afterCommit"}
	scripts := map[string]struct {
		refuse  string // step type answered with a refusal
		silent  string // step type never answered
		want    saga.Status
		wantCmd []string
	}{
		"success":    {want: saga.Completed, wantCmd: []string{"Reserve", "Charge", "Notify", "Ship"}},
		"refusal":    {refuse: "Ship", want: saga.Compensated, wantCmd: []string{"Reserve", "Charge", "Notify", "Ship", "Refund", "Release"}},
		"no-answers": {silent: "Ship", want: saga.Compensated, wantCmd: []string{"Reserve", "Charge", "Notify", "Ship", "CancelShipment", "Refund", "Release"}},
	}
	for name, sc := range scripts {
		for _, point := range points {
			for n := 1; n <= 6; n++ {
				t.Run(fmt.Sprintf("%s/%s/%d", name, point, n), func(t *testing.T) {
					h := newHarness(t, sqldbtest.SQLite(t), threeSteps())
					h.crashAt, h.crashN = point, n
					h.start("o1")
					var sent []string
					for i := 0; i < 100; i++ {
						cs := h.commands()
						if len(cs) == 0 {
							if in := h.get("o1"); in.Status.Terminal() {
								break
							}
							h.clock.Add(time.Second)
							h.fireDue()
							continue
						}
						for _, c := range cs {
							// Record each step once per direction: a resend
							// after a crash is the same effect (same key).
							if !slices.Contains(sent, c.Type) {
								sent = append(sent, c.Type)
							}
							if c.Type == sc.silent {
								continue
							}
							h.deliver(h.answer(c, c.Type != sc.refuse, "refused", nil))
						}
					}
					in := h.get("o1")
					if in.Status != sc.want {
						t.Fatalf("status = %s, want %s; history %v", in.Status, sc.want, kinds(in))
					}
					if st, _ := h.ended("o1"); st != string(sc.want) {
						t.Errorf("OnEnd recorded %q, want %s", st, sc.want)
					}
					if n == 1 && (strings.Contains(point, "reply") || sc.silent != "") && h.crashes != 1 {
						t.Errorf("crashes = %d, want the failpoint to have fired once", h.crashes)
					}
					if !slices.Equal(sent, sc.wantCmd) {
						t.Errorf("commands = %v, want %v", sent, sc.wantCmd)
					}
				})
			}
		}
	}
}

// TestACommandCarriesTheTimeTheSagaStopsWaiting: every attempt's command
// has the bus deadline of its own wait (the step's timeout from when it was
// sent), so a participant stops before the saga sends the next attempt.
func TestACommandCarriesTheTimeTheSagaStopsWaiting(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		sent := h.clock.Now()
		h.start("o1")
		first := h.one()
		if d, ok := bus.Deadline(first); !ok || !d.Equal(sent.Add(time.Second)) {
			t.Errorf("first attempt's deadline = %v, %v; want %v (sent + the step's 1s timeout)", d, ok, sent.Add(time.Second))
		}
		h.clock.Add(time.Second)
		h.fireDue()
		second := h.one()
		if d, ok := bus.Deadline(second); !ok || !d.Equal(sent.Add(2*time.Second)) {
			t.Errorf("second attempt's deadline = %v, %v; want %v", d, ok, sent.Add(2*time.Second))
		}
	})
}

// TestListIsNewestFirst: instances are listed by creation, newest first,
// so "10" comes before "9" (their ids sort the other way as text), and the
// pages a cursor walks cover every instance once; two created in the same
// millisecond keep a fixed order. A cursor List did not make is refused.
func TestListIsNewestFirst(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, threeSteps())
		var want []string
		for i := 1; i <= 12; i++ {
			id := strconv.Itoa(i)
			h.start(id)
			want = append([]string{id}, want...)
			if i != 6 { // 6 and 7 share a millisecond
				h.clock.Add(time.Millisecond)
			}
		}
		// 7 and 6 were created together: the tie goes to the id, descending.
		var got []string
		cursor := ""
		for page := 0; page < 10; page++ {
			ins, err := h.engine.List(context.Background(), saga.Filter{Before: cursor, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range ins {
				got = append(got, in.ID)
			}
			if len(ins) < 5 {
				break
			}
			cursor = saga.Cursor(ins[len(ins)-1])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pages of List (-want +got):\n%s", diff)
		}
		if _, err := h.engine.List(context.Background(), saga.Filter{Before: "9"}); !errors.Is(err, saga.ErrBadCursor) {
			t.Errorf("List with cursor %q = %v, want ErrBadCursor", "9", err)
		}
	})
}

// TestRecordedHook: the engine reports every committed transition's events
// (a start's when Start returns), each once, in order.
func TestRecordedHook(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), threeSteps())
	var got []string
	h.cfg.Recorded = func(in *saga.Instance, events []saga.Event) {
		for _, ev := range events {
			got = append(got, ev.Step+":"+string(ev.Kind))
		}
	}
	h.restart()
	h.start("r1")
	h.deliver(h.answer(h.one(), true, "", map[string]int{"Total": 4200}))
	h.deliver(h.answer(h.one(), false, "card declined", nil))
	h.deliver(h.answer(h.one(), true, "", nil)) // the release
	want := []string{":started", "reserve:sent", "reserve:succeeded", "charge:sent", "charge:failed", "reserve:undo_sent", "reserve:undone", ":compensated"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded events (-want +got):\n%s", diff)
	}
}

// TestResendsAreRationed times out fifty steps at once with a floor of 1
// resend per second and a share of 0.2: over the window, resends stay
// within 10 + 0.2 × the first sends (the compensations of the steps that
// gave up are first sends too). The steps refused a resend give up as if
// their attempts were spent and compensate; a compensation refused a
// resend waits for another backoff, its attempts not counted, and every
// one is done in the end: none is abandoned or parked.
func TestResendsAreRationed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		h := newHarness(t, db, &saga.Definition{Name: "order", Steps: []saga.Step{
			{Name: "reserve", Do: saga.Action{Topic: topicA, Type: "Reserve"}, Undo: &saga.Action{Topic: topicA, Type: "Release"}, Timeout: time.Second, Attempts: 2},
		}})
		h.cfg.ResendShare, h.cfg.ResendFloor = 0.2, 1
		h.restart()
		const n = 50
		id := func(i int) string { return fmt.Sprintf("o%d", i) }
		for i := range n {
			h.start(id(i))
		}
		if cs := h.commands(); len(cs) != n {
			t.Fatalf("first sends = %d, want %d", len(cs), n)
		}
		h.clock.Add(time.Second)
		h.fireDue()
		var resent, released []*bus.Message
		for _, c := range h.commands() {
			switch c.Type + "#" + c.Headers[saga.HeaderAttempt] {
			case "Reserve#2":
				resent = append(resent, c)
			case "Release#1":
				released = append(released, c)
			default:
				t.Fatalf("after the timeouts: %s#%s, want a resend or a first release", c.Type, c.Headers[saga.HeaderAttempt])
			}
		}
		r, k := len(resent), len(released)
		limit := 10 + 0.2*float64(n+k)
		if r+k != n || float64(r) > limit || float64(r) < limit-1 {
			t.Fatalf("%d resent, %d gave up; want the %d split with resends at the budget of %.1f", r, k, n, limit)
		}
		for _, c := range released {
			in := h.get(c.Headers[saga.HeaderSagaID])
			if in.Status != saga.Compensating || !strings.HasPrefix(in.Reason, "reserve got no answer in time") || !slices.Contains(kinds(in), "reserve:resend_rationed") {
				t.Errorf("%s: %s %q %v, want compensating for the silence after a rationed resend", in.ID, in.Status, in.Reason, kinds(in))
			}
		}
		// The resent steps are answered; every compensation is refused.
		for _, c := range resent {
			h.deliver(h.answer(c, true, "", nil))
		}
		refuse := func(cs []*bus.Message) {
			for _, c := range cs {
				h.deliver(h.answer(c, false, "store busy", nil))
			}
		}
		refuse(released)
		// In a window with no first sends only the floor's 10 go again;
		// the rest wait. Answered, they are done; the others follow as
		// the window moves on.
		for round := 0; ; round++ {
			h.clock.Add(11 * time.Second)
			h.fireDue()
			cs := h.commands()
			waiting := 0
			for i := range n {
				if in := h.get(id(i)); !in.Status.Terminal() {
					waiting++
				}
			}
			if want := min(10, waiting); len(cs) != want {
				t.Fatalf("round %d: %d compensations resent with %d waiting, want %d (the floor)", round, len(cs), waiting, want)
			}
			if len(cs) == 0 {
				break
			}
			for _, c := range cs {
				h.deliver(h.answer(c, true, "", nil))
			}
		}
		for i := range n {
			in := h.get(id(i))
			want := saga.Completed
			if slices.Contains(kinds(in), "reserve:resend_rationed") {
				want = saga.Compensated
			}
			if in.Status != want {
				t.Errorf("%s ended %s, want %s", in.ID, in.Status, want)
			}
		}
	})
}
