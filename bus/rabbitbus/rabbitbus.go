// Package rabbitbus is the bus over RabbitMQ (AMQP 0-9-1), with the official
// amqp091-go client.
//
// Each topic is a durable fanout exchange of the same name; each group is a
// durable quorum queue "<topic>.<group>" bound to it. Messages are
// persistent and published with mandatory set and publisher confirms on:
// Publish returns after the broker confirmed every message, and a message
// no queue would receive (no group subscribed yet) is returned by the
// broker and reported as an error, never dropped silently.
//
// Messages follow CloudEvents' AMQP binding in binary mode: attributes
// are application properties (headers) named "cloudEvents:<attribute>",
// the content type is the content-type property.
//
// Consumers ack manually. A failed message is requeued and delivered again;
// Message.Attempt comes from the quorum queue's x-delivery-count. A message
// rejected as Permanent goes to the queue's dead-letter exchange (the
// "deadletter" topic), and the queue's x-delivery-limit (a safety net above
// the DeadLetter middleware's own limit) dead-letters a message that keeps
// failing. A consumer that disconnects leaves its unacknowledged messages
// to be delivered to the next one. A lost connection is re-established
// with backoff, and subscriptions resume on it.
package rabbitbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/junction-go/junction/bus"
)

// Config tunes the adapter.
type Config struct {
	// URL is the broker's AMQP URL, amqp://user:pass@host:port/vhost.
	URL string
	// Concurrency is the number of lanes per subscription (and twice the
	// prefetch); 8 when zero.
	Concurrency int
	// DeliveryLimit is the quorum queues' x-delivery-limit; 20 when zero.
	DeliveryLimit int
	// QueueExpiry, when set, has the broker delete a group's queue after
	// it has had no consumer for that long (x-expires): for short-lived
	// groups such as tests and reply queues. Zero keeps queues.
	QueueExpiry time.Duration
	// LiveTopics are read only by live subscriptions (SubscribeLive): a
	// message published to one while nobody follows it is dropped, not an
	// error, as on a broker that keeps history no one reads.
	LiveTopics []string
}

// Bus publishes on one confirmed channel and gives each subscription a
// channel of its own, all on one connection. It is safe for concurrent
// use.
type Bus struct {
	cfg  Config
	subs bus.Subscriptions

	mu        sync.Mutex // guards conn, pubCh and the declared caches
	conn      *amqp.Connection
	pubCh     *amqp.Channel
	returns   chan amqp.Return
	exchanges map[string]bool
	pubMu     sync.Mutex // one Publish at a time on the confirmed channel
}

// Connect dials the broker.
func Connect(cfg Config) (*Bus, error) {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.DeliveryLimit == 0 {
		cfg.DeliveryLimit = 20
	}
	b := &Bus{cfg: cfg, exchanges: map[string]bool{}}
	if _, err := b.connection(); err != nil {
		return nil, err
	}
	return b, nil
}

// Check reports whether the connection is open (AMQP's heartbeats close a
// partitioned one within two intervals). It does not dial: the next
// publish or the subscriptions' reconnection does.
func (b *Bus) Check(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		return errors.New("rabbitbus: not connected")
	}
	return nil
}

// connection returns the live connection, dialling again when it was lost.
func (b *Bus) connection() (*amqp.Connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil && !b.conn.IsClosed() {
		return b.conn, nil
	}
	conn, err := amqp.DialConfig(b.cfg.URL, amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": "junction"}})
	if err != nil {
		return nil, fmt.Errorf("rabbitbus: connect: %w", err)
	}
	b.conn, b.pubCh, b.exchanges = conn, nil, map[string]bool{}
	return conn, nil
}

// publishChannel returns the confirmed publishing channel, opening it when
// needed.
func (b *Bus) publishChannel() (*amqp.Channel, chan amqp.Return, error) {
	conn, err := b.connection()
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pubCh != nil && !b.pubCh.IsClosed() {
		return b.pubCh, b.returns, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("rabbitbus: channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("rabbitbus: confirm mode: %w", err)
	}
	b.pubCh = ch
	b.returns = ch.NotifyReturn(make(chan amqp.Return, 1024))
	return ch, b.returns, nil
}

// declareExchange declares topic's exchange once per connection.
func (b *Bus) declareExchange(ch *amqp.Channel, topic string) error {
	b.mu.Lock()
	done := b.exchanges[topic]
	b.mu.Unlock()
	if done {
		return nil
	}
	if err := ch.ExchangeDeclare(topic, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitbus: declare exchange %s: %w", topic, err)
	}
	b.mu.Lock()
	b.exchanges[topic] = true
	b.mu.Unlock()
	return nil
}

// ErrUnroutable is returned for a message that no queue would receive.
var ErrUnroutable = errors.New("rabbitbus: message is unroutable (no group subscribes to the topic)")

// Publish sends msgs to topic's exchange and waits for every confirm.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
	}
	if b.subs.Closed() {
		return bus.ErrClosed
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	ch, returns, err := b.publishChannel()
	if err != nil {
		return err
	}
	if err := b.declareExchange(ch, topic); err != nil {
		return err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		headers := amqp.Table{}
		for k, v := range bus.BindingAMQP.Headers(m) {
			headers[k] = v
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topic, "", !slices.Contains(b.cfg.LiveTopics, topic), false, amqp.Publishing{
			Headers: headers, ContentType: bus.ContentType(m), MessageId: m.ID, Type: m.Type, DeliveryMode: amqp.Persistent, Body: m.Body,
		})
		if err != nil {
			return fmt.Errorf("rabbitbus: publish %s to %s: %w", m.ID, topic, err)
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			// Indeterminate: it may have been stored. Publishing again with
			// the same id is safe; consumers dedupe.
			return fmt.Errorf("rabbitbus: confirm of %s: %w", msgs[i].ID, err)
		}
		if !ok {
			return fmt.Errorf("rabbitbus: broker refused %s (nack)", msgs[i].ID)
		}
	}
	// The broker sends a return before the confirm of the same message,
	// and the client hands it over before it resolves the confirm.
	for {
		select {
		case r := <-returns:
			return fmt.Errorf("%w: %s to %s: %s", ErrUnroutable, r.MessageId, topic, r.ReplyText)
		default:
			return nil
		}
	}
}

type subscription struct {
	b      *Bus
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Subscribe declares group's queue on topic and consumes it.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &subscription{b: b, cancel: cancel, done: make(chan struct{})}
	deliveries, ch, err := b.consume(topic, group)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := b.subs.Add(s); err != nil {
		cancel()
		ch.Close()
		return nil, err
	}
	go s.run(hctx, topic, group, h, deliveries, ch)
	bus.CloseWhenDone(ctx, s, s.done)
	return s, nil
}

// SubscribeLive follows topic with a queue of its own that the broker
// names and deletes when the subscription's channel closes (exclusive,
// auto-delete), acknowledged on delivery. After a lost connection it
// follows again on a new queue; what was published meanwhile is not
// delivered to it.
func (b *Bus) SubscribeLive(ctx context.Context, topic string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	deliveries, ch, err := b.consumeLive(topic)
	if err != nil {
		return nil, err
	}
	stopped := make(chan struct{})
	live, err := bus.StartLive(ctx, &b.subs, h, func() { close(stopped) })
	if err != nil {
		ch.Close()
		return nil, err
	}
	go func() {
		backoff := 100 * time.Millisecond
		for {
			func() {
				defer ch.Close()
				for {
					select {
					case <-stopped:
						return
					case d, ok := <-deliveries:
						if !ok {
							return
						}
						live.Offer(fromDelivery(d))
					}
				}
			}()
			for {
				select {
				case <-stopped:
					return
				case <-time.After(backoff):
				}
				if deliveries, ch, err = b.consumeLive(topic); err == nil {
					backoff = 100 * time.Millisecond
					break
				}
				backoff = min(backoff*2, 10*time.Second)
			}
		}
	}()
	return live, nil
}

// consumeLive opens a channel with a live queue on topic's exchange: named
// by the broker, exclusive, deleted with the channel, acknowledged on
// delivery.
func (b *Bus) consumeLive(topic string) (<-chan amqp.Delivery, *amqp.Channel, error) {
	return b.open("a live subscription to "+topic, true, func(ch *amqp.Channel) (string, error) {
		if err := ch.ExchangeDeclare(topic, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return "", fmt.Errorf("declare exchange: %w", err)
		}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			return "", fmt.Errorf("declare queue: %w", err)
		}
		if err := ch.QueueBind(q.Name, "", topic, false, nil); err != nil {
			return "", fmt.Errorf("bind queue: %w", err)
		}
		return q.Name, nil
	})
}

// QueueName is the queue of group on topic.
func QueueName(topic, group string) string { return topic + "." + group }

// consume opens a channel, declares the topology of (topic, group) and
// starts consuming.
func (b *Bus) consume(topic, group string) (<-chan amqp.Delivery, *amqp.Channel, error) {
	return b.open(group+" on "+topic, false, func(ch *amqp.Channel) (string, error) {
		for _, ex := range []string{topic, bus.DeadLetterTopic} {
			if err := ch.ExchangeDeclare(ex, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
				return "", fmt.Errorf("declare exchange %s: %w", ex, err)
			}
		}
		q := QueueName(topic, group)
		args := amqp.Table{
			"x-queue-type":           "quorum",
			"x-delivery-limit":       int64(b.cfg.DeliveryLimit),
			"x-dead-letter-exchange": bus.DeadLetterTopic,
		}
		if b.cfg.QueueExpiry > 0 {
			args["x-expires"] = b.cfg.QueueExpiry.Milliseconds()
		}
		if topic == bus.DeadLetterTopic {
			delete(args, "x-dead-letter-exchange") // dead letters do not die twice
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return "", fmt.Errorf("declare queue: %w", err)
		}
		if err := ch.QueueBind(q, "", topic, false, nil); err != nil {
			return "", fmt.Errorf("bind queue: %w", err)
		}
		if err := ch.Qos(2*b.cfg.Concurrency, 0, false); err != nil {
			return "", fmt.Errorf("qos: %w", err)
		}
		return q, nil
	})
}

// open opens a channel on the live connection, has declare set up the
// queue to consume (for what: the subscription, in errors), and consumes it:
// acknowledged on delivery and exclusive when live, else acknowledged by
// the caller. A failure closes the channel.
func (b *Bus) open(what string, live bool, declare func(*amqp.Channel) (string, error)) (<-chan amqp.Delivery, *amqp.Channel, error) {
	conn, err := b.connection()
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("rabbitbus: channel: %w", err)
	}
	q, err := declare(ch)
	var deliveries <-chan amqp.Delivery
	if err == nil {
		if deliveries, err = ch.Consume(q, "", live, live, false, false, nil); err != nil {
			err = fmt.Errorf("consume: %w", err)
		}
	}
	if err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("rabbitbus: %s: %w", what, err)
	}
	return deliveries, ch, nil
}

// run handles deliveries until ctx is done, consuming again after a lost
// connection.
func (s *subscription) run(ctx context.Context, topic, group string, h bus.Handler, deliveries <-chan amqp.Delivery, ch *amqp.Channel) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for {
		s.drain(ctx, h, deliveries, ch)
		if ctx.Err() != nil {
			return
		}
		// The channel or connection went away: consume again.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			deliveries, ch, err = s.b.consume(topic, group)
			if err == nil {
				backoff = 100 * time.Millisecond
				break
			}
			backoff = min(backoff*2, 10*time.Second)
		}
	}
}

// drain handles deliveries on lanes until the channel closes or ctx is
// done; either way it waits for the running handlers and closes ch, which
// returns unacknowledged messages to the queue.
func (s *subscription) drain(ctx context.Context, h bus.Handler, deliveries <-chan amqp.Delivery, ch *amqp.Channel) {
	lanes := bus.NewLanes(ctx, s.b.cfg.Concurrency, 2, h)
	defer func() {
		lanes.Close()
		ch.Close()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			m := fromDelivery(d)
			lanes.Dispatch(m, func(err error) { settle(d, err) })
		}
	}
}

func fromDelivery(d amqp.Delivery) *bus.Message {
	h := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		if s, ok := v.(string); ok {
			h[k] = s
		}
	}
	if d.ContentType != "" {
		h[bus.HeaderContentType] = d.ContentType
	}
	m := bus.BindingAMQP.Message(h, d.Body)
	m.Topic = d.Exchange
	m.Attempt = 1
	if n, ok := d.Headers["x-delivery-count"].(int64); ok {
		m.Attempt = int(n) + 1
	}
	return m
}

func settle(d amqp.Delivery, err error) {
	switch {
	case err == nil:
		_ = d.Ack(false)
	case bus.IsPermanent(err):
		_ = d.Reject(false) // to the dead-letter exchange
	default:
		_ = d.Nack(false, true)
	}
}

// Close stops delivery, lets running handlers finish and returns what
// they did not settle to the queue.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.b.subs.Remove(s)
	})
	return nil
}

// Close closes every subscription, then the connection.
func (b *Bus) Close() error {
	if !b.subs.Close() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		return b.conn.Close()
	}
	return nil
}
