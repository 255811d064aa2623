package saga

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/sqldb"
)

var tracer = otel.Tracer("github.com/junction-go/junction/saga")

// Span attributes of the engine's spans.
const (
	attrSaga   = attribute.Key("saga.name")
	attrID     = attribute.Key("saga.id")
	attrStep   = attribute.Key("saga.step")
	attrStatus = attribute.Key("saga.status")
)

//go:embed migrations
var migrations embed.FS

// Config tunes an engine; ReplyTopic is required.
type Config struct {
	// ReplyTopic is where participants answer; subscribe HandleReply to
	// it.
	ReplyTopic string
	// Source is the ce-source of the commands (the owning service).
	Source string
	// Poll is how often due timers are looked for; 100 ms when zero.
	Poll time.Duration
	// MaxUndoAttempts is how many times a compensation is sent before the
	// instance is parked in NeedsAttention; 20 when zero.
	MaxUndoAttempts int
	// MaxBackoff caps the wait between compensation attempts; 10 s when
	// zero. The wait starts at the step's timeout and doubles.
	MaxBackoff time.Duration
	// ResendShare and ResendFloor ration resends (a command sent again
	// because its answer did not come in time, a compensation sent again
	// after a refusal): over the last ten seconds this engine sends again
	// at most ResendFloor commands per second plus ResendShare of the
	// commands it sent for the first time, so steps that time out together
	// (a participant down, or too slow under load) add a bounded share to
	// the load on it instead of multiplying it. A step refused a resend
	// gives up as if its attempts were spent, and its saga compensates; a
	// compensation refused one is sent after another backoff, its attempts
	// not counted, so none is abandoned. 0.2 and 10 when zero; a negative
	// ResendShare turns rationing off.
	ResendShare, ResendFloor float64
	// Failpoint, when set, is called at named points ("saga.reply.
	// beforeCommit", "saga.reply.afterCommit", "saga.timer.beforeCommit",
	// "saga.timer.afterCommit") so fault tests can crash the process
	// exactly there. Nil in production.
	Failpoint func(point string)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Ended, when set, is told of every instance this engine ended, after
	// the ending transaction committed (to wake whoever waits for it).
	Ended func(in *Instance)
	// Recorded, when set, is told of the events of every transition this
	// engine committed (each step's outcome), for metrics; and of a
	// start's when Start returns (in the caller's transaction, which
	// commits after: one that then rolls back was reported anyway).
	Recorded func(in *Instance, events []Event)
	// Journal, when set, gets the events of every transition in its
	// transaction, in order, before the owner's OnEnd sees the ending
	// (so an owner's own history can interleave them with its changes);
	// its error rolls the transition back.
	Journal func(ctx context.Context, tx *sql.Tx, in *Instance, events []Event) error
}

// Engine runs the instances of its definitions. It is safe for concurrent
// use, and several engines (replicas of one service) may share a
// database: every transition locks its instance's row.
type Engine struct {
	db   *sqldb.DB
	ob   *outbox.Outbox
	cfg  Config
	defs map[string]*Definition
	log  *slog.Logger
	// resends rations the resends of this process's engine.
	resends *resendBudget
}

// New creates the engine's tables in db when missing and returns an engine
// for defs that sends commands through ob (an outbox on the same db).
func New(ctx context.Context, db *sqldb.DB, ob *outbox.Outbox, cfg Config, log *slog.Logger, defs ...*Definition) (*Engine, error) {
	if cfg.ReplyTopic == "" {
		return nil, errors.New("saga: Config.ReplyTopic is required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.MaxUndoAttempts <= 0 {
		cfg.MaxUndoAttempts = 20
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ResendShare == 0 {
		cfg.ResendShare = 0.2
	}
	if cfg.ResendFloor <= 0 {
		cfg.ResendFloor = 10
	}
	e := &Engine{db: db, ob: ob, cfg: cfg, defs: map[string]*Definition{}, log: log, resends: newResendBudget(cfg.ResendShare, cfg.ResendFloor)}
	for _, d := range defs {
		if d.Name == "" || len(d.Steps) == 0 {
			return nil, fmt.Errorf("saga: definition %q needs a name and at least one step", d.Name)
		}
		if e.defs[d.Name] != nil {
			return nil, fmt.Errorf("saga: definition %q given twice", d.Name)
		}
		seen := map[string]bool{}
		for _, s := range d.Steps {
			if s.Name == "" || seen[s.Name] || s.Do.Topic == "" || s.Do.Type == "" {
				return nil, fmt.Errorf("saga: %s: every step needs a unique name and a command topic and type", d.Name)
			}
			if s.Undo != nil && (s.Undo.Topic == "" || s.Undo.Type == "") {
				return nil, fmt.Errorf("saga: %s: step %s: its undo needs a topic and type", d.Name, s.Name)
			}
			seen[s.Name] = true
		}
		e.defs[d.Name] = d
	}
	if err := db.MigrateAs(ctx, sqldb.MigrationsFS(migrations, "migrations"), "saga_goose_version"); err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	return e, nil
}

func (s Step) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 5 * time.Second
}

func (s Step) attempts() int {
	if s.Attempts > 0 {
		return s.Attempts
	}
	return 3
}

// txn is one transition being made.
type txn struct {
	ctx    context.Context
	tx     *sql.Tx
	def    *Definition
	in     *Instance
	now    time.Time
	events []Event
	// journaled counts the events handed to Config.Journal already.
	journaled int
	insert    bool
	ended     bool
}

// journal hands the events not yet journaled to Config.Journal.
func (e *Engine) journal(t *txn) error {
	if e.cfg.Journal == nil || t.journaled == len(t.events) {
		return nil
	}
	evs := t.events[t.journaled:]
	t.journaled = len(t.events)
	if err := e.cfg.Journal(t.ctx, t.tx, t.in, evs); err != nil {
		return fmt.Errorf("saga %s: journal: %w", t.in.ID, err)
	}
	return nil
}

func (t *txn) record(step string, kind EventKind, detail string) {
	t.events = append(t.events, Event{Time: t.now, Step: step, Kind: kind, Detail: detail})
}

// Start begins an instance of the named saga in tx, the caller's
// transaction, and writes its first command to the outbox: the saga
// exists, and its first command goes out, only if tx commits. id must be
// unique among all instances (the owner's aggregate id is a good choice).
// Call the outbox's Notify after the commit.
func (e *Engine) Start(ctx context.Context, tx *sql.Tx, saga, id string, data any) error {
	def := e.defs[saga]
	if def == nil {
		return fmt.Errorf("saga: no definition %q", saga)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("saga: data: %w", err)
	}
	now := e.cfg.Now().UTC()
	ctx, span := tracer.Start(ctx, "saga start "+saga, trace.WithAttributes(attrSaga.String(saga), attrID.String(id)))
	defer span.End()
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	t := &txn{ctx: ctx, tx: tx, def: def, now: now, insert: true, in: &Instance{
		ID: id, Saga: saga, Status: Running, Data: raw, Results: map[string]json.RawMessage{},
		CreatedAt: now, UpdatedAt: now, TraceParent: carrier.Get("traceparent"),
	}}
	t.record("", EventStarted, "")
	if err := e.send(t, dirDo); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if err := e.save(t); err != nil {
		return err
	}
	if err := e.journal(t); err != nil {
		return err
	}
	if e.cfg.Recorded != nil {
		e.cfg.Recorded(t.in, t.events)
	}
	return nil
}

// HandleReply is the bus handler for Config.ReplyTopic. It applies a reply
// to the instance waiting for it, in one transaction with the commands the
// transition sends. A reply the instance is not waiting for (duplicate,
// late after a timeout, for an ended instance) is recorded and ignored; a
// reply for an unknown instance is dropped; a malformed one is
// bus.Permanent.
func (e *Engine) HandleReply(ctx context.Context, m *bus.Message) error {
	r, err := parseReply(m)
	if err != nil {
		return bus.Permanent(err)
	}
	err = e.transition(ctx, r.sagaID, "saga.reply", func(t *txn) error {
		in, steps := t.in, t.def.Steps
		want := dirDo
		if in.Status == Compensating {
			want = dirUndo
		}
		if in.Status.Terminal() || in.Step >= len(steps) || steps[in.Step].Name != r.step || r.dir != want {
			t.record(r.step, EventIgnored, fmt.Sprintf("%s reply (ok=%t) while %s at %s", r.dir, r.OK, in.Status, e.stepName(t)))
			return nil
		}
		step := steps[in.Step]
		switch {
		case in.Status == Running && r.OK:
			if len(r.Data) > 0 {
				in.Results[step.Name] = r.Data
			}
			t.record(step.Name, EventSucceeded, "")
			return e.advance(t)
		case in.Status == Running:
			reason := r.Reason
			if reason == "" {
				reason = step.Name + " failed"
			}
			in.Reason = reason
			t.record(step.Name, EventFailed, reason)
			// A refusal guarantees no effect: undo only the steps before.
			return e.compensateFrom(t, in.Step-1)
		case r.OK:
			t.record(step.Name, EventUndone, "")
			return e.compensateFrom(t, in.Step-1)
		default:
			t.record(step.Name, EventUndoFailed, r.Reason)
			return e.retryUndoLater(t)
		}
	})
	if errors.Is(err, ErrNotFound) {
		e.log.WarnContext(ctx, "saga reply for an unknown instance", "saga_id", r.sagaID, "step", r.step, "id", m.ID)
		return nil
	}
	return err
}

func (e *Engine) stepName(t *txn) string { return stepOf(t.def, t.in) }

func stepOf(def *Definition, in *Instance) string {
	if in.Step < len(def.Steps) {
		return def.Steps[in.Step].Name
	}
	return "end"
}

// Abort stops a running instance: it compensates every step that may have
// taken effect, including the one awaiting its reply, and ends
// Compensated with reason. Aborting an instance already compensating does
// nothing; one that has ended is ErrEnded.
func (e *Engine) Abort(ctx context.Context, id, reason string) error {
	err := e.transition(ctx, id, "saga.abort", func(t *txn) error {
		switch {
		case t.in.Status.Terminal():
			return ErrEnded
		case t.in.Status == Compensating:
			return nil
		}
		t.in.Reason = reason
		t.record(e.stepName(t), EventAborted, reason)
		return e.compensateFrom(t, t.in.Step)
	})
	return err
}

// fire handles the timer of one instance if it is due.
func (e *Engine) fire(ctx context.Context, id string) error {
	return e.transition(ctx, id, "saga.timer", func(t *txn) error {
		in := t.in
		if in.Status.Terminal() || in.DeadlineAt.IsZero() || in.DeadlineAt.After(t.now) {
			return nil // another engine got there first
		}
		step := t.def.Steps[in.Step]
		if in.Status == Running {
			t.record(step.Name, EventTimedOut, "attempt "+strconv.Itoa(in.Attempt))
			if in.Attempt < step.attempts() {
				if e.resends.resend(t.now) {
					return e.send(t, dirDo)
				}
				t.record(step.Name, EventRationed, "no resend: too many steps are timing out; giving up on the step")
			}
			in.Reason = step.Name + " got no answer in time"
			// The command may have taken effect: undo this step too.
			return e.compensateFrom(t, in.Step)
		}
		if in.Attempt >= e.cfg.MaxUndoAttempts {
			in.Status = NeedsAttention
			in.DeadlineAt = time.Time{}
			t.record(step.Name, EventParked, fmt.Sprintf("compensation failed %d times", in.Attempt))
			e.log.ErrorContext(ctx, "saga needs attention", "saga", in.Saga, "saga_id", in.ID, "step", step.Name, "attempts", in.Attempt)
			return e.end(t)
		}
		if in.Attempt > 0 && !e.resends.resend(t.now) {
			t.record(step.Name, EventRationed, "compensation deferred: too many steps are being sent again")
			return e.retryUndoLater(t)
		}
		return e.send(t, dirUndo)
	})
}

// transition loads instance id locked, lets fn change it, and saves it,
// all in one transaction.
func (e *Engine) transition(ctx context.Context, id, point string, fn func(t *txn) error) error {
	var done *txn
	err := e.ob.InTx(ctx, func(tx *sql.Tx) error {
		in, err := e.load(ctx, tx, id, true)
		if err != nil {
			return err
		}
		def := e.defs[in.Saga]
		if def == nil {
			return fmt.Errorf("saga: instance %s is of unknown saga %q", id, in.Saga)
		}
		// A transition is a span of the instance's trace: of the reply's
		// when a reply caused it, else (a timer, an abort from elsewhere)
		// of the trace that started the instance.
		sctx := ctx
		if !trace.SpanContextFromContext(ctx).IsValid() && in.TraceParent != "" {
			sctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{"traceparent": in.TraceParent})
		}
		sctx, span := tracer.Start(sctx, strings.ReplaceAll(point, ".", " ")+" "+in.Saga,
			trace.WithAttributes(attrSaga.String(in.Saga), attrID.String(in.ID), attrStep.String(stepOf(def, in))))
		defer func() { span.SetAttributes(attrStatus.String(string(in.Status))); span.End() }()
		t := &txn{ctx: sctx, tx: tx, def: def, in: in, now: e.cfg.Now().UTC()}
		if err := fn(t); err != nil {
			if !errors.Is(err, ErrEnded) {
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
		if err := e.journal(t); err != nil {
			return err
		}
		for _, ev := range t.events {
			span.AddEvent(string(ev.Kind), trace.WithAttributes(attrStep.String(ev.Step), attribute.String("saga.detail", ev.Detail)))
		}
		if err := e.save(t); err != nil {
			return err
		}
		e.failpoint(point + ".beforeCommit")
		done = t
		return nil
	})
	if err == nil {
		e.failpoint(point + ".afterCommit")
		e.committed(done)
	}
	return err
}

// committed tells the hooks of a transition that committed.
func (e *Engine) committed(t *txn) {
	if e.cfg.Recorded != nil && len(t.events) > 0 {
		e.cfg.Recorded(t.in, t.events)
	}
	if t.ended && e.cfg.Ended != nil {
		e.cfg.Ended(t.in)
	}
}

func (e *Engine) failpoint(name string) {
	if e.cfg.Failpoint != nil {
		e.cfg.Failpoint(name)
	}
}

// advance moves to the next step, or completes.
func (e *Engine) advance(t *txn) error {
	in := t.in
	in.Step++
	in.Attempt = 0
	if in.Step == len(t.def.Steps) {
		in.Step = len(t.def.Steps) - 1
		in.Status = Completed
		in.DeadlineAt = time.Time{}
		t.record("", EventCompleted, "")
		return e.end(t)
	}
	return e.send(t, dirDo)
}

// compensateFrom undoes step j and every one before it that has an undo,
// latest first; with none left the instance ends Compensated.
func (e *Engine) compensateFrom(t *txn, j int) error {
	in := t.in
	for j >= 0 && t.def.Steps[j].Undo == nil {
		j--
	}
	in.Attempt = 0
	if j < 0 {
		in.Status = Compensated
		in.DeadlineAt = time.Time{}
		t.record("", EventCompensated, in.Reason)
		return e.end(t)
	}
	in.Status = Compensating
	in.Step = j
	return e.send(t, dirUndo)
}

// retryUndoLater sets the timer to send the current compensation again
// after a backoff.
func (e *Engine) retryUndoLater(t *txn) error {
	t.in.DeadlineAt = t.now.Add(e.backoff(t.def.Steps[t.in.Step], t.in.Attempt))
	return nil
}

func (e *Engine) backoff(s Step, attempt int) time.Duration {
	d := s.timeout()
	for i := 1; i < attempt && d < e.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, e.cfg.MaxBackoff)
}

func (e *Engine) end(t *txn) error {
	t.ended = true
	if err := e.journal(t); err != nil {
		return err
	}
	if t.def.OnEnd == nil {
		return nil
	}
	if err := t.def.OnEnd(t.ctx, t.tx, t.in); err != nil {
		return fmt.Errorf("saga %s: on end: %w", t.in.ID, err)
	}
	return nil
}

// send writes the current step's command (or compensation) to the outbox
// and sets the timer.
func (e *Engine) send(t *txn, dir string) error {
	in := t.in
	step := t.def.Steps[in.Step]
	act, kind := step.Do, EventSent
	if dir == dirUndo {
		act, kind = *step.Undo, EventUndoSent
	}
	in.Attempt++
	op := "command"
	if dir == dirUndo {
		op = "compensate"
	}
	ctx, span := tracer.Start(t.ctx, "saga "+op+" "+step.Name, trace.WithAttributes(
		attrSaga.String(in.Saga), attrID.String(in.ID), attrStep.String(step.Name),
		attribute.String("saga.command", act.Type), attribute.Int("saga.attempt", in.Attempt)))
	defer span.End()
	var body any = struct{}{}
	if act.Body != nil {
		b, err := act.Body(in)
		if err != nil {
			return fmt.Errorf("saga %s: %s body: %w", in.ID, step.Name, err)
		}
		if b != nil {
			body = b
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("saga %s: %s body: %w", in.ID, step.Name, err)
	}
	attempt := strconv.Itoa(in.Attempt)
	m := &bus.Message{
		ID:            in.ID + "." + step.Name + "." + dir + "." + attempt,
		Type:          act.Type,
		Source:        e.cfg.Source,
		Time:          t.now,
		Key:           in.ID,
		CorrelationID: in.ID,
		Headers: map[string]string{
			HeaderSagaID:      in.ID,
			HeaderStep:        step.Name,
			HeaderDir:         dir,
			HeaderKey:         in.Saga + "/" + in.ID + "/" + step.Name + "/" + dir,
			HeaderAttempt:     attempt,
			bus.HeaderReplyTo: e.cfg.ReplyTopic,
		},
		Body: raw,
	}
	if in.Attempt == 1 {
		e.resends.sent(t.now)
	}
	if dir == dirDo {
		in.DeadlineAt = t.now.Add(step.timeout())
	} else {
		in.DeadlineAt = t.now.Add(e.backoff(step, in.Attempt))
	}
	// The participant stops working on this attempt when the saga stops
	// waiting for it (bus.SkipExpired), so a redelivery never overlaps
	// the next attempt.
	m.Headers[bus.HeaderDeadline] = strconv.FormatInt(in.DeadlineAt.UnixNano(), 10)
	if err := e.ob.Add(ctx, t.tx, act.Topic, m); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	t.record(step.Name, kind, "attempt "+attempt)
	return nil
}

const instanceCols = `id, saga, status, step, attempt, data, results, reason, deadline_at, created_at, updated_at, trace`

func (e *Engine) load(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string, lock bool) (*Instance, error) {
	query := `SELECT ` + instanceCols + ` FROM saga_instances WHERE id = ?`
	if lock && e.db.Dialect.Name() == "postgres" {
		query += ` FOR UPDATE`
	}
	in, err := scanInstance(q.QueryRowContext(ctx, e.db.Dialect.Rebind(query), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("saga: load %s: %w", id, err)
	}
	return in, nil
}

func scanInstance(row interface{ Scan(...any) error }) (*Instance, error) {
	var in Instance
	var status, data, results string
	var deadline sql.NullInt64
	var created, updated int64
	if err := row.Scan(&in.ID, &in.Saga, &status, &in.Step, &in.Attempt, &data, &results, &in.Reason, &deadline, &created, &updated, &in.TraceParent); err != nil {
		return nil, err
	}
	in.Status = Status(status)
	in.Data = json.RawMessage(data)
	if err := json.Unmarshal([]byte(results), &in.Results); err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	if in.Results == nil {
		in.Results = map[string]json.RawMessage{}
	}
	if deadline.Valid {
		in.DeadlineAt = time.UnixMilli(deadline.Int64).UTC()
	}
	in.CreatedAt, in.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return &in, nil
}

func (e *Engine) save(t *txn) error {
	in := t.in
	in.UpdatedAt = t.now
	results, err := json.Marshal(in.Results)
	if err != nil {
		return err
	}
	var deadline any
	if !in.DeadlineAt.IsZero() {
		deadline = in.DeadlineAt.UnixMilli()
	}
	q := e.db.Dialect.Rebind
	if t.insert {
		_, err = t.tx.ExecContext(t.ctx, q(`INSERT INTO saga_instances (`+instanceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			in.ID, in.Saga, string(in.Status), in.Step, in.Attempt, string(in.Data), string(results), in.Reason, deadline, in.CreatedAt.UnixMilli(), in.UpdatedAt.UnixMilli(), in.TraceParent)
	} else {
		_, err = t.tx.ExecContext(t.ctx, q(`UPDATE saga_instances SET status = ?, step = ?, attempt = ?, results = ?, reason = ?, deadline_at = ?, updated_at = ? WHERE id = ?`),
			string(in.Status), in.Step, in.Attempt, string(results), in.Reason, deadline, in.UpdatedAt.UnixMilli(), in.ID)
	}
	if err != nil {
		return fmt.Errorf("saga: save %s: %w", in.ID, err)
	}
	ins := q(`INSERT INTO saga_events (saga_id, at, step, kind, detail) VALUES (?, ?, ?, ?, ?)`)
	for _, ev := range t.events {
		if _, err := t.tx.ExecContext(t.ctx, ins, in.ID, ev.Time.UnixMilli(), ev.Step, string(ev.Kind), ev.Detail); err != nil {
			return fmt.Errorf("saga: record %s: %w", in.ID, err)
		}
	}
	return nil
}

// Run fires due timers until ctx is done, then returns nil. Failures are
// logged and tried again on the next poll.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := e.FireDue(ctx); err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "saga timers", "err", err)
		}
	}
}

// FireDue handles every timer due now and returns how many instances it
// looked at.
func (e *Engine) FireDue(ctx context.Context) (int, error) {
	rows, err := e.db.QueryContext(ctx, e.db.Dialect.Rebind(`SELECT id FROM saga_instances WHERE deadline_at IS NOT NULL AND deadline_at <= ? ORDER BY deadline_at LIMIT 256`), e.cfg.Now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("saga: due timers: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := e.fire(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// Count returns how many instances there are, by definition and status.
func (e *Engine) Count(ctx context.Context) (map[string]map[Status]int, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT saga, status, COUNT(*) FROM saga_instances GROUP BY saga, status`)
	if err != nil {
		return nil, fmt.Errorf("saga: count: %w", err)
	}
	defer rows.Close()
	out := map[string]map[Status]int{}
	for rows.Next() {
		var name, status string
		var n int
		if err := rows.Scan(&name, &status, &n); err != nil {
			return nil, fmt.Errorf("saga: count: %w", err)
		}
		if out[name] == nil {
			out[name] = map[Status]int{}
		}
		out[name][Status(status)] = n
	}
	return out, rows.Err()
}

// Get returns instance id with its history, or ErrNotFound.
func (e *Engine) Get(ctx context.Context, id string) (*Instance, error) {
	in, err := e.load(ctx, e.db, id, false)
	if err != nil {
		return nil, err
	}
	rows, err := e.db.QueryContext(ctx, e.db.Dialect.Rebind(`SELECT seq, at, step, kind, detail FROM saga_events WHERE saga_id = ? ORDER BY seq`), id)
	if err != nil {
		return nil, fmt.Errorf("saga: history of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev Event
		var at int64
		var kind string
		if err := rows.Scan(&ev.Seq, &at, &ev.Step, &kind, &ev.Detail); err != nil {
			return nil, fmt.Errorf("saga: history of %s: %w", id, err)
		}
		ev.Time, ev.Kind = time.UnixMilli(at).UTC(), EventKind(kind)
		in.History = append(in.History, ev)
	}
	return in, rows.Err()
}

// Filter selects instances for List; zero fields select all.
type Filter struct {
	Saga   string
	Status Status
	// Before lists the instances after the page that ended with the
	// instance whose Cursor it is.
	Before string
	// Limit is the most returned; 100 when zero.
	Limit int
}

// Cursor is the place of in in List's order, for Filter.Before.
func Cursor(in *Instance) string {
	return strconv.FormatInt(in.CreatedAt.UnixMilli(), 10) + "." + in.ID
}

// ErrBadCursor is returned by List for a Filter.Before that Cursor did not
// make.
var ErrBadCursor = errors.New("saga: malformed cursor")

// List returns instances without their history, newest first (by creation
// time, then by id), Limit at a time.
func (e *Engine) List(ctx context.Context, f Filter) ([]*Instance, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	query := `SELECT ` + instanceCols + ` FROM saga_instances WHERE 1 = 1`
	var args []any
	if f.Saga != "" {
		query += ` AND saga = ?`
		args = append(args, f.Saga)
	}
	if f.Status != "" {
		query += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	if f.Before != "" {
		ms, id, ok := strings.Cut(f.Before, ".")
		at, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || id == "" {
			return nil, ErrBadCursor
		}
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, at, at, id)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := e.db.QueryContext(ctx, e.db.Dialect.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	defer rows.Close()
	out := []*Instance{}
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("saga: list: %w", err)
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// Counts returns the number of instances in each status.
func (e *Engine) Counts(ctx context.Context) (map[Status]int, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM saga_instances GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("saga: counts: %w", err)
	}
	defer rows.Close()
	out := map[Status]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[Status(s)] = n
	}
	return out, rows.Err()
}
