// Package saga runs orchestrated sagas: a sequence of steps, each a command
// sent to another service and a reply that moves the saga on, with a
// compensation for each step that must be undone if a later one fails.
//
// A saga is defined in plain Go by the service that owns it (Definition).
// The Engine keeps every instance in the owner's SQL database and sends
// every command through the owner's transactional outbox, in the same
// transaction as the transition that causes it, so a crash at any moment
// loses nothing and sends nothing twice that was not meant to be sent
// again. Replies are matched to the step and direction the instance is
// waiting for; a duplicate, late or stray reply is recorded and ignored.
// Step timeouts are durable timers (a deadline column polled by Run), so
// they fire after a restart too. Compensation runs in reverse order and is
// retried with backoff until it succeeds, or the instance is parked in
// NeedsAttention for a person to look at.
//
// Participants receive commands with an idempotency key (Command.Key) that
// is the same for every attempt of a step, so a step retried after a
// timeout has at most one effect; they answer with Command.Reply, written
// through their own outbox in the same transaction as the effect. Every
// command carries, as its bus deadline, the time the saga stops waiting
// for that attempt (the step's timeout, or a compensation's backoff): a
// participant handling commands under bus.Reliable does not start one
// past it, so redeliveries of an attempt stop when the saga's next one
// begins.
package saga

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Status is where an instance is.
type Status string

// Statuses. Completed, Compensated and NeedsAttention are terminal.
const (
	// Running: a step's command is out, waiting for its reply.
	Running Status = "running"
	// Compensating: undoing the steps done, latest first.
	Compensating Status = "compensating"
	// Completed: every step succeeded.
	Completed Status = "completed"
	// Compensated: a step failed (or the saga was aborted) and every step
	// done before it was undone.
	Compensated Status = "compensated"
	// NeedsAttention: a compensation kept failing past its retry limit;
	// the saga stopped and a person must finish it.
	NeedsAttention Status = "needs_attention"
)

// Terminal reports whether s is a final status.
func (s Status) Terminal() bool {
	return s == Completed || s == Compensated || s == NeedsAttention
}

// Definition is one kind of saga.
type Definition struct {
	// Name identifies the definition; stored with every instance.
	Name string
	// Steps run in order. A step's Undo runs only if its Do may have taken
	// effect: it succeeded, or it timed out.
	Steps []Step
	// OnEnd, if set, is called in the transaction that ends an instance
	// (Completed, Compensated or NeedsAttention), so the owner's state
	// (an order's status, the events it publishes) changes atomically with
	// the saga's. An error rolls the transition back; it is tried again.
	OnEnd func(ctx context.Context, tx *sql.Tx, in *Instance) error
}

// Step is one step of a saga.
type Step struct {
	Name string
	// Do is the command that performs the step.
	Do Action
	// Undo compensates Do; nil when there is nothing to undo (a pivot or
	// a read).
	Undo *Action
	// Timeout is how long to wait for a reply to one send; 5 s when zero.
	Timeout time.Duration
	// Attempts is how many times Do is sent (the first send and retries
	// after a timeout) before the step counts as failed and the saga
	// compensates; 3 when zero. Every attempt carries the same Key, so a
	// participant applies it at most once.
	Attempts int
}

// Action is a command a step sends.
type Action struct {
	// Topic receives the command.
	Topic string
	// Type is the command's type, e.g. "ReserveStock".
	Type string
	// Body returns the command's body (encoded as JSON); nil sends {}.
	Body func(in *Instance) (any, error)
}

// Instance is one run of a saga.
type Instance struct {
	ID     string
	Saga   string
	Status Status
	// Step is the index of the step awaiting a reply: its Do while
	// Running, its Undo while Compensating.
	Step    int
	Attempt int
	// Data is what the saga was started with (JSON).
	Data json.RawMessage
	// Results holds each step's reply data (JSON) by step name.
	Results map[string]json.RawMessage
	// Reason says why the saga compensated; empty when it did not.
	Reason string
	// DeadlineAt is when the current wait times out; zero once ended.
	DeadlineAt time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// TraceParent is the W3C traceparent of the work that started the
	// instance ("" when it was not traced): every transition is a span of
	// that trace, timers' included.
	TraceParent string
	// History is every transition, oldest first (from Get only).
	History []Event
}

// Decode decodes the instance's start data into v.
func (in *Instance) Decode(v any) error {
	if err := json.Unmarshal(in.Data, v); err != nil {
		return fmt.Errorf("saga %s: data: %w", in.ID, err)
	}
	return nil
}

// Result decodes step's reply data into v and reports whether there was
// any.
func (in *Instance) Result(step string, v any) (bool, error) {
	raw, ok := in.Results[step]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("saga %s: result of %s: %w", in.ID, step, err)
	}
	return true, nil
}

// Event is one transition of an instance.
type Event struct {
	Seq    int64
	Time   time.Time
	Step   string
	Kind   EventKind
	Detail string
}

// EventKind names a transition.
type EventKind string

// Event kinds.
const (
	EventStarted     EventKind = "started"
	EventSent        EventKind = "sent"        // a step's command went out (Detail: attempt)
	EventSucceeded   EventKind = "succeeded"   // its reply said done
	EventFailed      EventKind = "failed"      // its reply said no (Detail: reason)
	EventTimedOut    EventKind = "timed_out"   // no reply within the timeout
	EventUndoSent    EventKind = "undo_sent"   // a compensation went out
	EventUndone      EventKind = "undone"      // a compensation was confirmed
	EventUndoFailed  EventKind = "undo_failed" // a compensation was refused or timed out; retried
	EventAborted     EventKind = "aborted"     // Abort was called (Detail: reason)
	EventIgnored     EventKind = "ignored"     // a duplicate, late or stray reply
	EventCompleted   EventKind = "completed"   // every step done
	EventCompensated EventKind = "compensated" // every done step undone
	EventParked      EventKind = "needs_attention"
	EventRationed    EventKind = "resend_rationed" // the resend budget was spent: the step gave up, or its compensation waits
)

// ErrEnded is returned by Abort for an instance that has already ended.
var ErrEnded = errors.New("saga: instance has ended")

// ErrNotFound is returned for an unknown instance.
var ErrNotFound = errors.New("saga: no such instance")
