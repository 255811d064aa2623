// Package kafkabus is the bus over Kafka, with franz-go.
//
// Each topic is a Kafka topic (created with Partitions partitions when
// missing); a message's key is its record key, so every message of one key
// lands in one partition and is handled in order. The producer is
// idempotent with acks from all in-sync replicas; Publish returns after
// every record is acknowledged. Each group is a Kafka consumer group that
// starts at the earliest offset; offsets are committed only after the
// handler's verdict, so a consumer that dies mid-message leaves it to be
// delivered again to the partition's next owner.
//
// A failed message is tried again in place (Message.Attempt counts the
// tries in this process), holding back its partition, until it succeeds or
// is Permanent; put bus.DeadLetter in the handler to bound the tries. Kafka
// has no publish dedupe by message id: consumers dedupe (package outbox).
package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/junction-go/junction/bus"
)

// Config tunes the adapter.
type Config struct {
	// Brokers are the seed brokers (host:port).
	Brokers []string
	// Partitions of a topic the adapter creates; 6 when zero.
	Partitions int32
	// ReplicationFactor of a topic the adapter creates; 1 when zero.
	ReplicationFactor int16
}

// Bus publishes with one producer client and gives each subscription its
// own consumer-group client. It is safe for concurrent use.
type Bus struct {
	cfg      Config
	producer *kgo.Client
	admin    *kadm.Client

	mu     sync.Mutex
	topics map[string]bool
	subs   bus.Subscriptions
}

// Connect returns a bus on the brokers of cfg.
func Connect(cfg Config) (*Bus, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafkabus: no brokers")
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 6
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 1
	}
	p, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("kafkabus: %w", err)
	}
	return &Bus{cfg: cfg, producer: p, admin: kadm.NewClient(p), topics: map[string]bool{}}, nil
}

// ensureTopic creates topic when it does not exist yet.
func (b *Bus) ensureTopic(ctx context.Context, topic string) error {
	b.mu.Lock()
	known := b.topics[topic]
	b.mu.Unlock()
	if known {
		return nil
	}
	resp, err := b.admin.CreateTopic(ctx, b.cfg.Partitions, b.cfg.ReplicationFactor, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafkabus: create topic %s: %w", topic, err)
	}
	b.mu.Lock()
	b.topics[topic] = true
	b.mu.Unlock()
	return nil
}

// Publish produces msgs to topic and waits for every acknowledgement.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
	}
	if b.subs.Closed() {
		return bus.ErrClosed
	}
	if err := b.ensureTopic(ctx, topic); err != nil {
		return err
	}
	recs := make([]*kgo.Record, 0, len(msgs))
	for _, m := range msgs {
		r := &kgo.Record{Topic: topic, Value: m.Body}
		if m.Key != "" {
			r.Key = []byte(m.Key)
		}
		for k, v := range bus.BindingKafka.Headers(m) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: bus.HeaderContentType, Value: []byte(bus.ContentType(m))})
		recs = append(recs, r)
	}
	if err := b.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kafkabus: publish to %s: %w", topic, err)
	}
	return nil
}

type subscription struct {
	b      *Bus
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Subscribe joins group on topic and returns once the group has assigned
// this member its partitions. A group with more members than the topic has
// partitions leaves some without any; Subscribe fails for those after 30 s.
func (b *Bus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	if err := b.ensureTopic(ctx, topic); err != nil {
		return nil, err
	}
	assigned := make(chan struct{})
	var assignedOnce sync.Once
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.cfg.Brokers...),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			assignedOnce.Do(func() { close(assigned) })
		}),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return nil, fmt.Errorf("kafkabus: consumer %s on %s: %w", group, topic, err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &subscription{b: b, cl: cl, cancel: cancel, done: make(chan struct{})}
	if err := b.subs.Add(s); err != nil {
		cancel()
		cl.Close()
		return nil, err
	}
	go s.run(hctx, h)
	// In place means joined: wait for the group to give this member its
	// partitions (a rebalance when others are already in the group).
	select {
	case <-assigned:
	case <-ctx.Done():
		_ = s.Close()
		return nil, fmt.Errorf("kafkabus: join %s on %s: %w", group, topic, ctx.Err())
	case <-time.After(30 * time.Second):
		_ = s.Close()
		return nil, fmt.Errorf("kafkabus: join %s on %s: no partitions assigned within 30s", group, topic)
	}
	bus.CloseWhenDone(ctx, s, s.done)
	return s, nil
}

// run polls, handles each partition's records in order (partitions in
// parallel) and commits what was handled, until ctx is done.
func (s *subscription) run(ctx context.Context, h bus.Handler) {
	defer close(s.done)
	for {
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			handled []*kgo.Record
		)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, r := range p.Records {
					if !handle(ctx, h, r) {
						return // stopping: leave the rest uncommitted
					}
					mu.Lock()
					handled = append(handled, r)
					mu.Unlock()
				}
			}()
		})
		wg.Wait()
		if len(handled) > 0 {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.cl.CommitRecords(cctx, handled...)
			cancel()
		}
		s.cl.AllowRebalance()
		if ctx.Err() != nil {
			return
		}
	}
}

// handle calls h until it succeeds or fails permanently, and reports
// whether the record is done (false when ctx ended first).
func handle(ctx context.Context, h bus.Handler, r *kgo.Record) bool {
	hdr := make(map[string]string, len(r.Headers))
	for _, x := range r.Headers {
		hdr[x.Key] = string(x.Value)
	}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		m := bus.BindingKafka.Message(hdr, r.Value)
		m.Topic, m.Attempt = r.Topic, attempt
		err := h(ctx, m)
		if err == nil || bus.IsPermanent(err) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// SubscribeLive follows topic from its current end, with no consumer
// group: every partition is read from the end offset it had when the call
// began, so every record produced after it returns is delivered (once,
// not again on a handler's error). Nothing is committed or left behind.
func (b *Bus) SubscribeLive(ctx context.Context, topic string, h bus.Handler) (bus.Subscription, error) {
	if b.subs.Closed() {
		return nil, bus.ErrClosed
	}
	if err := b.ensureTopic(ctx, topic); err != nil {
		return nil, err
	}
	ends, err := b.admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafkabus: live subscription to %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { from[o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("kafkabus: live subscription to %s: %w", topic, err)
	}
	live, err := bus.StartLive(ctx, &b.subs, h, cl.Close)
	if err != nil {
		cl.Close()
		return nil, err
	}
	go func() {
		for {
			fetches := cl.PollFetches(context.Background())
			if fetches.IsClientClosed() {
				return
			}
			fetches.EachRecord(func(r *kgo.Record) {
				hdr := make(map[string]string, len(r.Headers))
				for _, x := range r.Headers {
					hdr[x.Key] = string(x.Value)
				}
				m := bus.BindingKafka.Message(hdr, r.Value)
				m.Topic, m.Attempt = r.Topic, 1
				live.Offer(m)
			})
		}
	}()
	return live, nil
}

// Close stops delivery, waits for running handlers, and leaves the group.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.cl.CloseAllowingRebalance()
		s.b.subs.Remove(s)
	})
	return nil
}

// Close closes every subscription, then the connection.
// Check asks a broker of the cluster for its metadata.
func (b *Bus) Check(ctx context.Context) error {
	if err := b.producer.Ping(ctx); err != nil {
		return fmt.Errorf("kafkabus: no broker answered: %w", err)
	}
	return nil
}

func (b *Bus) Close() error {
	if b.subs.Close() {
		b.producer.Close()
	}
	return nil
}
