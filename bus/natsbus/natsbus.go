// Package natsbus is the bus over NATS JetStream.
//
// Each topic is a stream (file storage) holding the subject of the same
// name; each group is a durable pull consumer on it that starts at the
// stream's first message. A message's id is sent as Nats-Msg-Id, so the
// server drops a second publish of it within the stream's duplicate window
// (2 minutes). Publish returns after the server's PubAck. A message that
// fails is negatively acknowledged with a backoff delay and delivered
// again; an unacknowledged one (the consumer died) comes back after
// AckWait. Message.Attempt is JetStream's delivery count.
//
// Durability is the server's: with SyncAlways every write is fsynced
// before it is acknowledged; without it (the default, much faster), an
// acknowledged message survives a crash of the broker process but may be
// lost on a power failure within the sync interval (2 minutes by default).
package natsbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/bus"
)

// Config tunes the adapter; the zero value is usable.
type Config struct {
	// Name is the connection's name, shown by the server.
	Name string
	// AckWait is how long a delivered message may stay unacknowledged
	// before it is delivered again; 30 s when zero.
	AckWait time.Duration
	// MaxAckPending bounds the unacknowledged messages of a group; 1000
	// when zero. A slow group is held back by it.
	MaxAckPending int
	// Concurrency is the number of lanes each subscription handles
	// messages on (one key stays on one lane); 8 when zero.
	Concurrency int
	// MaxAge is how long a stream keeps messages; 7 days when zero.
	MaxAge time.Duration
	// Replicas of each stream in a cluster; 1 when zero.
	Replicas int
	// TLS, when set, is the connection's TLS (with a client certificate
	// for a server that maps certificates to users).
	TLS *tls.Config
	// OnResume, when set, is told before each attempt of a subscription
	// to consume again after its pull from the server ended by itself:
	// why is what ended it, or why the attempt before failed.
	OnResume func(topic, group string, why error)
	// PublishTimeout is the longest Publish waits for the server's
	// acknowledgement of a message, whatever the caller's context allows;
	// 5 s when zero. An acknowledgement can be lost (the stream's
	// leader dies after storing the message, the connection moves to
	// another server), and without a bound Publish would wait for it
	// forever.
	PublishTimeout time.Duration
}

// Bus is a publisher and subscriber on one NATS connection. It is safe for
// concurrent use.
type Bus struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream

	mu      sync.Mutex
	streams map[string]jetstream.Stream
	subs    bus.Subscriptions
}

// Connect connects to the NATS server(s) at url.
func Connect(url string, cfg Config) (*Bus, error) {
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 1000
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	// Connected is not ready: a cluster that is starting answers before
	// its nodes have chosen a leader, and every stream call would time
	// out. The caller retries (a service waits for its broker).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbus: JetStream is not ready: %w", err)
	}
	return &Bus{cfg: cfg, nc: nc, js: js, streams: map[string]jetstream.Stream{}}, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// StreamName returns the stream that holds topic.
func StreamName(topic string) string { return unsafeName.ReplaceAllString(topic, "_") }

// stream returns topic's stream, creating it when missing.
func (b *Bus) stream(ctx context.Context, topic string) (jetstream.Stream, error) {
	b.mu.Lock()
	s, ok := b.streams[topic]
	b.mu.Unlock()
	if ok {
		return s, nil
	}
	cfg := jetstream.StreamConfig{
		Name:       StreamName(topic),
		Subjects:   []string{topic},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     b.cfg.MaxAge,
		Duplicates: 2 * time.Minute,
		Replicas:   b.cfg.Replicas,
	}
	s, err := b.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = b.js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("natsbus: stream for %s: %w", topic, err)
	}
	b.mu.Lock()
	b.streams[topic] = s
	b.mu.Unlock()
	return s, nil
}

// Publish stores msgs in topic's stream, in order, and waits for every
// acknowledgement.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
	}
	if b.subs.Closed() {
		return bus.ErrClosed
	}
	if _, err := b.stream(ctx, topic); err != nil {
		return err
	}
	if len(msgs) == 1 {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
		defer cancel()
		_, err := b.js.PublishMsg(ctx, toNATS(topic, msgs[0]))
		if err != nil {
			return fmt.Errorf("natsbus: publish %s to %s: %w", msgs[0].ID, topic, err)
		}
		return nil
	}
	// Several: send them all, then wait for every acknowledgement. One
	// connection keeps them in order.
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := b.js.PublishMsgAsync(toNATS(topic, m))
		if err != nil {
			return fmt.Errorf("natsbus: publish %s to %s: %w", m.ID, topic, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("natsbus: publish %s to %s: %w", msgs[i].ID, topic, err)
		case <-ctx.Done():
			return fmt.Errorf("natsbus: publish to %s: %w", topic, ctx.Err())
		}
	}
	return nil
}

func toNATS(topic string, m *bus.Message) *nats.Msg {
	nm := nats.NewMsg(topic)
	for k, v := range bus.BindingNATS.Headers(m) {
		nm.Header.Set(k, v)
	}
	nm.Header.Set(bus.HeaderContentType, bus.ContentType(m))
	nm.Header.Set(jetstream.MsgIDHeader, bus.DedupeID(m))
	nm.Data = m.Body
	return nm
}

func fromNATS(jm jetstream.Msg) *bus.Message {
	h := make(map[string]string, len(jm.Headers()))
	for k, vs := range jm.Headers() {
		if len(vs) > 0 && !strings.HasPrefix(k, "Nats-") {
			h[k] = vs[0]
		}
	}
	m := bus.BindingNATS.Message(h, jm.Data())
	m.Topic = jm.Subject()
	m.Attempt = 1
	if md, err := jm.Metadata(); err == nil {
		m.Attempt = int(md.NumDelivered)
	}
	return m
}

type subscription struct {
	b      *Bus
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	iter jetstream.MessagesContext // the current one; replaced when it ends on its own
}

// stop stops the current iterator.
func (s *subscription) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.iter.Stop()
}

// Subscribe joins group (a durable consumer) on topic.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	iter, err := b.consume(ctx, topic, group)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sub := &subscription{b: b, cancel: cancel, iter: iter, done: make(chan struct{})}
	if err := b.subs.Add(sub); err != nil {
		iter.Stop()
		cancel()
		return nil, err
	}

	lanes := bus.NewLanes(hctx, b.cfg.Concurrency, 2, h)
	go func() {
		defer close(sub.done)
		defer lanes.Close()
		for {
			jm, err := iter.Next()
			if err == nil {
				m := fromNATS(jm)
				lanes.Dispatch(m, func(err error) { settle(jm, m, err) })
				continue
			}
			if hctx.Err() != nil {
				return // Close stopped it
			}
			// The iterator ended by itself: the server said the consumer
			// is gone or refused a pull (a cluster electing leaders, a
			// stream recreated). Consume again, the consumer made anew
			// where it is missing, until that works or the subscription
			// is closed: a subscription never ends silently.
			if iter = sub.resume(hctx, topic, group, err); iter == nil {
				return
			}
		}
	}()
	bus.CloseWhenDone(ctx, sub, sub.done)
	return sub, nil
}

// consume makes (or finds) group's durable consumer on topic's stream and
// starts pulling from it.
func (b *Bus) consume(ctx context.Context, topic, group string) (jetstream.MessagesContext, error) {
	s, err := b.stream(ctx, topic)
	if err != nil {
		return nil, err
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       StreamName(group),
		FilterSubject: topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    -1, // dead letters are the DeadLetter middleware's call
		MaxAckPending: b.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: consumer %s on %s: %w", group, topic, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(max(128, 2*b.cfg.Concurrency)))
	if err != nil {
		return nil, fmt.Errorf("natsbus: consume %s on %s: %w", group, topic, err)
	}
	return iter, nil
}

// resume consumes again after the iterator ended with why, retrying with
// backoff (100 ms doubling to 5 s) until it works, and returns the new
// iterator; nil once ctx ends.
func (s *subscription) resume(ctx context.Context, topic, group string, why error) jetstream.MessagesContext {
	wait := 100 * time.Millisecond
	for {
		if s.b.cfg.OnResume != nil {
			s.b.cfg.OnResume(topic, group, why)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s.b.mu.Lock()
		delete(s.b.streams, topic) // looked up again: it may have been recreated
		s.b.mu.Unlock()
		iter, err := s.b.consume(cctx, topic, group)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.iter = iter
			s.mu.Unlock()
			if ctx.Err() != nil { // closed meanwhile
				iter.Stop()
				return nil
			}
			return iter
		}
		why, wait = err, min(wait*2, 5*time.Second)
	}
}

// SubscribeLive follows topic with a plain NATS subscription on its
// subject: the server sends it each message as the stream stores it, from
// now on, and keeps nothing for it. A message published with no live
// reader, or while the handler is bus.LiveBuffer messages behind, is not
// delivered to it.
func (b *Bus) SubscribeLive(ctx context.Context, topic string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	var live *bus.Live
	ready := make(chan struct{})
	ns, err := b.nc.Subscribe(topic, func(nm *nats.Msg) {
		<-ready
		hs := make(map[string]string, len(nm.Header))
		for k, vs := range nm.Header {
			if len(vs) > 0 && !strings.HasPrefix(k, "Nats-") {
				hs[k] = vs[0]
			}
		}
		m := bus.BindingNATS.Message(hs, nm.Data)
		m.Topic, m.Attempt = nm.Subject, 1
		if live != nil {
			live.Offer(m)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: live subscription to %s: %w", topic, err)
	}
	live, err = bus.StartLive(ctx, &b.subs, h, func() { _ = ns.Unsubscribe() })
	if err != nil {
		_ = ns.Unsubscribe()
		close(ready)
		return nil, err
	}
	close(ready)
	// In place once the server has the subscription.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		_ = live.Close()
		return nil, fmt.Errorf("natsbus: live subscription to %s: %w", topic, err)
	}
	return live, nil
}

// settle tells the server the handler's verdict.
func settle(jm jetstream.Msg, m *bus.Message, err error) {
	switch {
	case err == nil:
		_ = jm.Ack()
	case bus.IsPermanent(err):
		_ = jm.TermWithReason(truncate(err.Error(), 256))
	default:
		_ = jm.NakWithDelay(backoff(m.Attempt))
	}
}

// backoff is the delay before a failed message comes back: 100 ms
// doubling per delivery, at most 30 s.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Close stops delivery, lets running handlers finish and settles their
// messages.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.stop()
		<-s.done
		s.b.subs.Remove(s)
	})
	return nil
}

// Close closes every subscription, then the connection.
func (b *Bus) Close() error {
	if b.subs.Close() {
		b.nc.Close()
	}
	return nil
}

// Conn returns the underlying connection, for tools that need more than
// the bus (stream inspection).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Check makes a round trip to the server (PING/PONG): a connection that
// is up but partitioned fails it too.
func (b *Bus) Check(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("natsbus: not connected (%s)", b.nc.Status())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsbus: broker did not answer: %w", err)
	}
	return nil
}
