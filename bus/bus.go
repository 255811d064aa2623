// Package bus is Junction's messaging core: a message, a Publisher and a
// Subscriber with consumer groups, handler middleware, CloudEvents headers and
// request-reply. It imports no broker client; adapters (natsbus, kafkabus,
// rabbitbus, stompbus, membus) implement it, and bustest is the contract
// suite every adapter passes.
//
// Delivery is at least once. A handler's return value is its verdict:
//
//   - nil: the message is done (acknowledged);
//   - an error: it failed for now and is delivered again later (nack);
//   - an error wrapped by Permanent: it can never succeed; it is not
//     delivered again (terminated), and the DeadLetter middleware moves it
//     to a dead-letter topic with the reason first.
//
// Business failures (a declined card) are results: return nil and publish
// the outcome; never an error.
package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Message is one event or command.
type Message struct {
	// ID is unique per message and is the deduplication key everywhere:
	// broker-side publish dedupe and consumer-side inboxes.
	ID string
	// Type is the event or command type, e.g. "OrderCreated".
	Type string
	// Source names the producer, e.g. "order-service".
	Source string
	// Time is when the message was created.
	Time time.Time
	// Key orders messages: those with the same key are handled in order.
	// It is usually the aggregate's id (an order id).
	Key string
	// CorrelationID ties every message of one business flow together (the
	// order); CausationID is the id of the message that caused this one.
	CorrelationID string
	CausationID   string
	// Headers are other attributes, e.g. "traceparent".
	Headers map[string]string
	Body    []byte

	// Set on delivery.
	Topic   string
	Attempt int // 1 on the first delivery
}

// NewID returns a random 128-bit message id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Publisher sends messages to topics.
type Publisher interface {
	// Publish sends msgs to topic, in order, and returns once the broker
	// has acknowledged every one (stored it durably, as far as the broker
	// promises). An error means some may not have been stored; publishing
	// again with the same ids is safe. Safe for concurrent use.
	Publish(ctx context.Context, topic string, msgs ...*Message) error
	// Close releases the publisher. Publishing after Close fails.
	Close() error
}

// Handler handles one delivered message; see the package doc for what its
// error means.
type Handler func(ctx context.Context, msg *Message) error

// Subscriber delivers messages to handlers.
type Subscriber interface {
	// Subscribe delivers the messages of topic to h as a member of group:
	// every group gets every message (fan-out); the members of one group
	// share them (competing consumers). A new group starts at the oldest
	// message the broker keeps for topic where it keeps history (NATS,
	// Kafka), and at its own creation where it does not (RabbitMQ,
	// ActiveMQ). It returns once the subscription is in place. Delivery
	// stops at ctx's end or the subscription's Close. h may be called
	// concurrently for messages with different keys, never for two
	// messages with the same key.
	Subscribe(ctx context.Context, topic, group string, h Handler) (Subscription, error)
	// Close closes every subscription and the connection.
	Close() error
}

// LiveSubscriber is implemented by adapters that can follow a topic live:
// every live subscription gets every message published to topic after it
// is in place (fan-out to each, shared with no one), none from before, at
// most once: a handler's error is not redelivered. Nothing of it is left at
// the broker after Close (no durable consumer, queue or offset), so a
// process may take a new one each time it starts. It suits readers that can
// fill a gap from the owner (the gateway's WebSockets fetch an order's
// history when a seq is missing), not work that must be done.
type LiveSubscriber interface {
	SubscribeLive(ctx context.Context, topic string, h Handler) (Subscription, error)
}

// Subscription is one running subscription.
type Subscription interface {
	// Close stops delivery and waits for running handlers to return.
	Close() error
}

// Checker is implemented by adapters that can tell whether the broker
// answers now; a service is not ready while it does not (the registry then
// sends it no traffic, and nothing restarts it).
type Checker interface {
	// Check returns nil when a round trip to the broker succeeded within
	// ctx.
	Check(ctx context.Context) error
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that no redelivery can cure (a malformed
// message, a panic in the handler).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// ErrClosed is returned by a closed publisher or subscriber.
var ErrClosed = errors.New("bus: closed")

// Validate checks what every adapter needs of a message before publishing.
func Validate(topic string, m *Message) error {
	if topic == "" {
		return errors.New("bus: empty topic")
	}
	if m.ID == "" {
		return fmt.Errorf("bus: message to %s has no id", topic)
	}
	if m.Type == "" {
		return fmt.Errorf("bus: message %s has no type", m.ID)
	}
	if m.Source == "" {
		return fmt.Errorf("bus: message %s (%s) has no source", m.ID, m.Type)
	}
	return nil
}
