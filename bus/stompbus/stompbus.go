// Package stompbus is the bus over STOMP 1.2, for ActiveMQ 5 (and Artemis),
// with github.com/go-stomp/stomp/v3.
//
// A topic is an ActiveMQ virtual topic: messages are sent persistent to
// /topic/VirtualTopic.<topic>, and each group consumes its own queue
// /queue/Consumer.<group>.VirtualTopic.<topic>, which the broker fills from
// the moment the group first subscribed (there is no history for new
// groups). Publish waits for the broker's RECEIPT of the last message of a
// batch; frames are processed in order, so that covers the batch. A
// message sent while no group's queue exists yet is dropped by the broker,
// as topics do: STOMP gives no way to tell.
//
// Messages carry CloudEvents attributes as ce-* headers (STOMP has no
// CloudEvents binding; its headers are HTTP-like, so the HTTP binding's
// names are used) and the content type in the frame's content-type.
//
// Each subscription has its own connection and acks each message
// individually (client-individual). A failed message is NACKed and the
// broker delivers it again after a delay (its redelivery plugin, see
// deploy/activemq/activemq.xml), up to its limit, after which it goes to
// ActiveMQ.DLQ. Message.Attempt counts deliveries seen by this subscription
// (the broker says only that a message was redelivered). A subscription
// that disconnects leaves its unacknowledged messages to the next member.
package stompbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/junction-go/junction/bus"
)

// Config tunes the adapter.
type Config struct {
	// Addr is the broker's STOMP address, host:port.
	Addr     string
	Login    string
	Passcode string
	// Concurrency is the number of lanes per subscription (and half the
	// prefetch); 8 when zero.
	Concurrency int
}

// Bus publishes on one connection and gives each subscription its own.
// It is safe for concurrent use.
type Bus struct {
	cfg  Config
	subs bus.Subscriptions

	mu   sync.Mutex // one batch at a time, so a batch's frames stay together
	conn *stomp.Conn
}

// Connect dials the broker.
func Connect(cfg Config) (*Bus, error) {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	b := &Bus{cfg: cfg}
	c, err := b.dial()
	if err != nil {
		return nil, err
	}
	b.conn = c
	return b, nil
}

func (b *Bus) dial() (*stomp.Conn, error) {
	opts := []func(*stomp.Conn) error{stomp.ConnOpt.AcceptVersion(stomp.V12), stomp.ConnOpt.HeartBeat(0, 0)}
	if b.cfg.Login != "" {
		opts = append(opts, stomp.ConnOpt.Login(b.cfg.Login, b.cfg.Passcode))
	}
	c, err := stomp.Dial("tcp", b.cfg.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("stompbus: connect %s: %w", b.cfg.Addr, err)
	}
	return c, nil
}

// TopicDestination and QueueDestination name the virtual topic of topic
// and the queue of group on it.
func TopicDestination(topic string) string { return "/topic/VirtualTopic." + topic }

// QueueDestination is the queue group consumes for topic.
func QueueDestination(topic, group string) string {
	return "/queue/Consumer." + group + ".VirtualTopic." + topic
}

// reserved are STOMP and ActiveMQ headers, never taken as message headers.
var reserved = map[string]bool{
	frame.Destination: true, frame.ContentLength: true, frame.ContentType: true, frame.Receipt: true,
	frame.MessageId: true, frame.Subscription: true, frame.Ack: true, frame.Transaction: true,
	"expires": true, "priority": true, "persistent": true, "timestamp": true, "redelivered": true,
	"original-destination": true, "redeliveryDelay": true, "scheduledJobId": true, "type": true, "correlation-id": true,
}

// Publish sends msgs to topic's virtual topic and waits for the receipt.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
		for k := range m.Headers {
			if reserved[k] && k != bus.HeaderContentType {
				return fmt.Errorf("stompbus: header %q of %s is reserved by STOMP", k, m.ID)
			}
		}
	}
	if b.subs.Closed() {
		return bus.ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		c, err := b.dial()
		if err != nil {
			return err
		}
		b.conn = c
	}
	dest := TopicDestination(topic)
	errc := make(chan error, 1)
	go func() {
		for i, m := range msgs {
			opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
			for k, v := range bus.BindingSTOMP.Headers(m) {
				opts = append(opts, stomp.SendOpt.Header(k, v))
			}
			if i == len(msgs)-1 {
				opts = append(opts, stomp.SendOpt.Receipt)
			}
			if err := b.conn.Send(dest, bus.ContentType(m), m.Body, opts...); err != nil {
				errc <- fmt.Errorf("stompbus: send %s to %s: %w", m.ID, topic, err)
				return
			}
		}
		errc <- nil
	}()
	select {
	case err := <-errc:
		if err != nil {
			// The connection is unusable after an error; dial again next time.
			_ = b.conn.MustDisconnect()
			b.conn = nil
		}
		return err
	case <-ctx.Done():
		// The receipt may still come; the outcome is unknown. A new
		// connection next time keeps the batch's frames from mixing.
		_ = b.conn.MustDisconnect()
		b.conn = nil
		<-errc
		return fmt.Errorf("stompbus: publish to %s: %w", topic, ctx.Err())
	}
}

type subscription struct {
	b      *Bus
	conn   *stomp.Conn
	sub    *stomp.Subscription
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Subscribe consumes group's queue of topic on a connection of its own.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	conn, err := b.dial()
	if err != nil {
		return nil, err
	}
	sub, err := conn.Subscribe(QueueDestination(topic, group), stomp.AckClientIndividual,
		stomp.SubscribeOpt.Header("activemq.prefetchSize", strconv.Itoa(2*b.cfg.Concurrency)))
	if err != nil {
		_ = conn.MustDisconnect()
		return nil, fmt.Errorf("stompbus: subscribe %s on %s: %w", group, topic, err)
	}
	// A receipted no-op: once it returns, the broker has processed the
	// SUBSCRIBE, so the group's queue exists and receives what follows.
	if err := conn.Send("/queue/junction.subscribed", "", nil, stomp.SendOpt.Receipt, stomp.SendOpt.Header("expires", "1")); err != nil {
		_ = conn.MustDisconnect()
		return nil, fmt.Errorf("stompbus: subscribe %s on %s: %w", group, topic, err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &subscription{b: b, conn: conn, sub: sub, cancel: cancel, done: make(chan struct{})}
	if err := b.subs.Add(s); err != nil {
		cancel()
		_ = conn.MustDisconnect()
		return nil, err
	}
	go s.run(hctx, topic, h)
	bus.CloseWhenDone(ctx, s, s.done)
	return s, nil
}

// SubscribeLive follows topic on its virtual topic itself (not a group's
// queue), on a connection of its own with automatic acks: ActiveMQ sends
// it what is published from now on and keeps nothing for it. A lost
// connection ends the delivery (the subscription's handler is not called
// again); take a new subscription.
func (b *Bus) SubscribeLive(ctx context.Context, topic string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	conn, err := b.dial()
	if err != nil {
		return nil, err
	}
	sub, err := conn.Subscribe(TopicDestination(topic), stomp.AckAuto)
	if err == nil {
		// Receipted: the broker has the SUBSCRIBE once this returns.
		err = conn.Send("/queue/junction.subscribed", "", nil, stomp.SendOpt.Receipt, stomp.SendOpt.Header("expires", "1"))
	}
	if err != nil {
		_ = conn.MustDisconnect()
		return nil, fmt.Errorf("stompbus: live subscription to %s: %w", topic, err)
	}
	stopped := make(chan struct{})
	live, err := bus.StartLive(ctx, &b.subs, h, func() {
		close(stopped)
		_ = sub.Unsubscribe()
		_ = conn.Disconnect()
	})
	if err != nil {
		_ = conn.MustDisconnect()
		return nil, err
	}
	go func() {
		for {
			select {
			case <-stopped:
				return
			case msg, ok := <-sub.C:
				if !ok || msg.Err != nil {
					return
				}
				live.Offer(fromFrame(topic, msg))
			}
		}
	}()
	return live, nil
}

func (s *subscription) run(ctx context.Context, topic string, h bus.Handler) {
	defer close(s.done)
	lanes := bus.NewLanes(ctx, s.b.cfg.Concurrency, 2, h)
	defer lanes.Close()
	seen := map[string]int{} // deliveries per broker message id
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-s.sub.C:
			if !ok || msg.Err != nil {
				return
			}
			m := fromFrame(topic, msg)
			id := msg.Header.Get(frame.MessageId)
			seen[id]++
			m.Attempt = seen[id]
			if msg.Header.Get("redelivered") == "true" && m.Attempt < 2 {
				m.Attempt = 2
			}
			lanes.Dispatch(m, func(err error) {
				if err == nil {
					_ = s.conn.Ack(msg)
					return
				}
				// Transient or permanent, the broker decides what comes next:
				// a delayed redelivery, or ActiveMQ.DLQ after its limit.
				_ = s.conn.Nack(msg)
			})
			if len(seen) > 10000 {
				clear(seen)
			}
		}
	}
}

func fromFrame(topic string, msg *stomp.Message) *bus.Message {
	h := make(map[string]string, msg.Header.Len())
	for i := range msg.Header.Len() {
		k, v := msg.Header.GetAt(i)
		if !reserved[k] && !strings.HasPrefix(k, "activemq.") {
			h[k] = v
		}
	}
	if msg.ContentType != "" {
		h[bus.HeaderContentType] = msg.ContentType
	}
	m := bus.BindingSTOMP.Message(h, msg.Body)
	m.Topic = topic
	return m
}

// Close stops delivery, lets running handlers finish and settle, and
// disconnects, which returns unacknowledged messages to the queue.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		_ = s.sub.Unsubscribe()
		_ = s.conn.Disconnect()
		s.b.subs.Remove(s)
	})
	return nil
}

// Close closes every subscription, then the publishing connection.
func (b *Bus) Close() error {
	if !b.subs.Close() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		err := b.conn.Disconnect()
		b.conn = nil
		if err != nil && !errors.Is(err, stomp.ErrAlreadyClosed) {
			return err
		}
	}
	return nil
}
