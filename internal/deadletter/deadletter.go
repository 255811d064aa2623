// Package deadletter is deadletter-service's domain: every message that a
// consumer group gave up on, with why, kept so that an operator can read it
// and send it back for another try (redrive).
package deadletter

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
)

// Status of a dead letter.
const (
	StatusDead     = "dead"
	StatusRedriven = "redriven"
)

// Letter is one dead message.
type Letter struct {
	ID        int64  // this service's own id
	MessageID string // the message's id before it died
	Topic     string // where it was published
	Group     string // the group that gave up on it
	Type      string
	Reason    string
	Attempts  int
	DiedAt    time.Time
	Headers   map[string]string // the message's own headers, without the dead-letter ones
	Body      []byte
	Status    string
	Redrives  int
}

// FromMessage reads a dead letter from the message DeadLetter published.
func FromMessage(m *bus.Message) (Letter, error) {
	l := Letter{
		MessageID: m.Headers[bus.HeaderDLQID], Topic: m.Headers[bus.HeaderDLQTopic], Group: m.Headers[bus.HeaderDLQGroup],
		Type: m.Type, Reason: m.Headers[bus.HeaderDLQReason], Body: m.Body, Status: StatusDead, Headers: map[string]string{},
	}
	if l.MessageID == "" || l.Topic == "" {
		return Letter{}, fault.New(fault.Invalid, "dead letter %s names no original id or topic", m.ID)
	}
	l.Attempts, _ = strconv.Atoi(m.Headers[bus.HeaderDLQAttempts])
	l.DiedAt, _ = time.Parse(time.RFC3339Nano, m.Headers[bus.HeaderDLQTime])
	if l.DiedAt.IsZero() {
		l.DiedAt = time.Now().UTC()
	}
	for k, v := range m.Headers {
		if !strings.HasPrefix(k, "dlq-") {
			l.Headers[k] = v
		}
	}
	// The message's own attributes travel as headers again on redrive.
	for k, v := range bus.ToHeaders(&bus.Message{ID: l.MessageID, Type: m.Type, Source: m.Source, Time: m.Time, Key: m.Key, CorrelationID: m.CorrelationID, CausationID: m.CausationID}) {
		l.Headers[k] = v
	}
	return l, nil
}

// Store keeps dead letters. Get of a missing one is fault.NotFound.
type Store interface {
	List(ctx context.Context, limit int) ([]Letter, error)
	Get(ctx context.Context, id int64) (Letter, error)
	// MarkRedriven counts one more redrive of id and returns the count.
	MarkRedriven(ctx context.Context, id int64) (int, error)
}

// Publisher sends a redriven message (bus.Publisher).
type Publisher interface {
	Publish(ctx context.Context, topic string, msgs ...*bus.Message) error
}

// Service is deadletter-service's use cases; only administrators may use
// them. It is safe for concurrent use.
type Service struct {
	store Store
	pub   Publisher
}

// NewService returns the service.
func NewService(store Store, pub Publisher) *Service { return &Service{store: store, pub: pub} }

func admin(caller auth.Principal) error {
	if !caller.IsAdmin() {
		return fault.New(fault.Forbidden, "dead letters are for administrators")
	}
	return nil
}

// List returns the newest dead letters.
func (s *Service) List(ctx context.Context, caller auth.Principal, limit int) ([]Letter, error) {
	if err := admin(caller); err != nil {
		return nil, err
	}
	if limit < 1 || limit > 500 {
		return nil, fault.New(fault.Invalid, "limit must be between 1 and 500")
	}
	return s.store.List(ctx, limit)
}

// Get returns one dead letter.
func (s *Service) Get(ctx context.Context, caller auth.Principal, id int64) (Letter, error) {
	if err := admin(caller); err != nil {
		return Letter{}, err
	}
	return s.store.Get(ctx, id)
}

// Redrive sends dead letter id back to its topic with its original id:
// groups that handled it before recognise it in their inbox; the group
// that gave up tries again. It returns the letter as it now stands.
func (s *Service) Redrive(ctx context.Context, caller auth.Principal, id int64) (Letter, error) {
	l, err := s.Get(ctx, caller, id)
	if err != nil {
		return Letter{}, err
	}
	headers := maps.Clone(l.Headers)
	headers[bus.HeaderRedrive] = strconv.FormatInt(time.Now().UnixNano(), 36)
	m := bus.FromHeaders(headers, l.Body)
	if err := s.pub.Publish(ctx, l.Topic, m); err != nil {
		return Letter{}, fault.Wrap(fault.Unavailable, err, "the broker did not take the message; try again")
	}
	n, err := s.store.MarkRedriven(ctx, id)
	if err != nil {
		return Letter{}, fmt.Errorf("redrive %d: %w", id, err)
	}
	l.Redrives, l.Status = n, StatusRedriven
	return l, nil
}
