// Package outbox is the transactional outbox and the idempotent consumer
// (inbox), on a service's own SQL database.
//
// A state change and the messages it causes are written in one local
// transaction (Add); a Relay publishes the messages in the order they were
// written, marks them sent only after the broker acknowledged them, and
// tries again until it does. A crash at any point loses nothing: a message
// published but not yet marked is published again with the same id, which
// the broker's dedupe or the consumer's inbox absorbs.
//
// Every message written gets a "create <topic>" span (OpenTelemetry's
// messaging conventions) in the trace of the work that wrote it, and that
// span's context in its traceparent header, stored with the row: the
// relay's send and the consumer's process spans continue that trace, so a
// message crosses the outbox without starting a new one.
//
// On the consuming side, Idempotent records each message id in the same
// transaction as the handler's effect, so a redelivered or duplicated
// message has no second effect.
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustrace"
	"github.com/junction-go/junction/sqldb"
)

var tracer = otel.Tracer("github.com/junction-go/junction/outbox")

//go:embed migrations
var migrations embed.FS

// Outbox writes messages into a service's database. It is safe for
// concurrent use.
type Outbox struct {
	db     *sqldb.DB
	notify chan struct{}
	// added counts messages written by Add, so InTx knows whether its
	// transaction wrote any.
	added atomic.Uint64
}

// New creates the outbox's tables in db when missing and returns the
// outbox.
func New(ctx context.Context, db *sqldb.DB) (*Outbox, error) {
	if err := db.MigrateAs(ctx, sqldb.MigrationsFS(migrations, "migrations"), "outbox_goose_version"); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Outbox{db: db, notify: make(chan struct{}, 1)}, nil
}

// InTx runs fn in a transaction on the outbox's database and, once it has
// committed messages (Add), wakes this process's relay, so they go out at
// once rather than at its next poll. It is the way to write a state change
// and its messages: nobody has to remember to Notify after the commit.
// fn's error rolls everything back and is returned.
func (o *Outbox) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	before := o.added.Load()
	if err := o.db.InTx(ctx, fn); err != nil {
		return err
	}
	if o.added.Load() != before {
		// Possibly another transaction's messages too: an early wake is
		// harmless, a missed one costs a poll interval.
		o.Notify()
	}
	return nil
}

// Add writes msgs for topic in tx, the caller's transaction: they are
// published only if tx commits. Use a transaction from InTx, or call
// Notify after the commit.
func (o *Outbox) Add(ctx context.Context, tx *sql.Tx, topic string, msgs ...*bus.Message) error {
	q := o.db.Dialect.Rebind(`INSERT INTO outbox (id, topic, headers, body, created_at) VALUES (?, ?, ?, ?, ?)`)
	now := time.Now().UnixMilli()
	defer o.added.Add(1)
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
		created(ctx, topic, m)
		headers, body, err := encodeRow(m)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, q, m.ID, topic, headers, body, now); err != nil {
			return fmt.Errorf("outbox: add %s: %w", m.ID, err)
		}
	}
	return nil
}

// created records m's creation in a span of ctx's trace (or, when ctx has
// none, of the trace m already carries) and puts that span's context in
// m's headers.
func created(ctx context.Context, topic string, m *bus.Message) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = bustrace.Extract(ctx, m)
	}
	ctx, span := tracer.Start(ctx, "create "+topic,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingOperationTypeCreate,
			semconv.MessagingOperationName("create"),
			semconv.MessagingDestinationName(topic),
			semconv.MessagingMessageID(m.ID),
			semconv.MessagingMessageConversationID(m.CorrelationID),
		))
	bustrace.Inject(ctx, m)
	span.End()
}

// Notify tells a relay in this process that new messages were committed, so
// it publishes them without waiting for its next poll. Call it after the
// transaction that called Add commits; it never blocks.
func (o *Outbox) Notify() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// Backlog is how far the relay is behind.
type Backlog struct {
	Unsent int64
	// OldestAge is the age of the oldest unsent message; 0 when none.
	OldestAge time.Duration
}

// Backlog returns the number of unsent messages and the age of the oldest.
func (o *Outbox) Backlog(ctx context.Context) (Backlog, error) {
	var n int64
	var oldest sql.NullInt64
	err := o.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL`).Scan(&n, &oldest)
	if err != nil {
		return Backlog{}, fmt.Errorf("outbox: backlog: %w", err)
	}
	b := Backlog{Unsent: n}
	if oldest.Valid {
		b.OldestAge = time.Since(time.UnixMilli(oldest.Int64))
	}
	return b, nil
}

// encodeRow is how a message is stored in an outbox row: its headers (the
// HTTP binding's, as JSON) and its body (never NULL). An attribute or
// header that is not valid UTF-8 is refused: JSON would store it changed.
func encodeRow(m *bus.Message) (headers string, body []byte, err error) {
	hs := bus.ToHeaders(m)
	for k, v := range hs {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "", nil, fmt.Errorf("message %q: header %q is not valid UTF-8", m.ID, k)
		}
	}
	h, err := json.Marshal(hs)
	if err != nil {
		return "", nil, err
	}
	body = m.Body
	if body == nil {
		body = []byte{}
	}
	return string(h), body, nil
}

// decodeRow reads a stored row back as a message; a row whose headers are
// not a JSON object of strings is an error, never a panic.
func decodeRow(headers string, body []byte) (*bus.Message, error) {
	var h map[string]string
	if err := json.Unmarshal([]byte(headers), &h); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	return bus.FromHeaders(h, body), nil
}
