// Package membus is an in-process bus for unit tests of code that uses bus:
// topics keep every message, groups deliver them one at a time in publish
// order to their members in turn, a failed message is delivered again at
// once (to the next member), and a permanently failed one is dropped. It
// offers no durability and no dedupe, and is not for production.
package membus

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/junction-go/junction/bus"
)

// Bus is an in-process publisher and subscriber. It is safe for concurrent
// use.
type Bus struct {
	mu     sync.Mutex
	topics map[string]*topic
	closed bool
	lives  int
	wg     sync.WaitGroup
}

type topic struct {
	log    []*bus.Message
	groups map[string]*group
}

type group struct {
	next    int // index in the topic's log of the next message to deliver
	members []*subscription
	turn    int
	running bool
	wake    chan struct{}
	// live is the name of a live subscription's own group, which goes
	// when its member does; "" for a named group.
	live string
}

// New returns an empty bus.
func New() *Bus { return &Bus{topics: map[string]*topic{}} }

func (b *Bus) topic(name string) *topic {
	t, ok := b.topics[name]
	if !ok {
		t = &topic{groups: map[string]*group{}}
		b.topics[name] = t
	}
	return t
}

// Publish appends msgs to topic.
func (b *Bus) Publish(_ context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return bus.ErrClosed
	}
	t := b.topic(topic)
	for _, m := range msgs {
		c := *m
		c.Headers = copyHeaders(m.Headers)
		c.Body = append([]byte(nil), m.Body...)
		c.Topic = topic
		t.log = append(t.log, &c)
	}
	for _, g := range t.groups {
		poke(g.wake)
	}
	return nil
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// SubscribeLive follows topic from now on in a group of its own, which is
// forgotten when the subscription ends; a failed message is not delivered
// again.
func (b *Bus) SubscribeLive(ctx context.Context, topicName string, h bus.Handler) (bus.Subscription, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, bus.ErrClosed
	}
	b.lives++
	name := "\x00live-" + strconv.Itoa(b.lives)
	t := b.topic(topicName)
	t.groups[name] = &group{wake: make(chan struct{}, 1), next: len(t.log), live: name}
	b.mu.Unlock()
	return b.Subscribe(ctx, topicName, name, func(ctx context.Context, m *bus.Message) error {
		_ = h(ctx, m)
		return nil
	})
}

type subscription struct {
	busy   sync.Mutex // held while the handler runs
	h      bus.Handler
	ctx    context.Context
	cancel context.CancelFunc
	b      *Bus
	g      *group
}

// Subscribe joins group on topic.
func (b *Bus) Subscribe(ctx context.Context, topicName, groupName string, h bus.Handler) (bus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, bus.ErrClosed
	}
	t := b.topic(topicName)
	g, ok := t.groups[groupName]
	if !ok {
		g = &group{wake: make(chan struct{}, 1)}
		t.groups[groupName] = g
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{h: h, ctx: sctx, cancel: cancel, b: b, g: g}
	g.members = append(g.members, s)
	if !g.running {
		g.running = true
		b.wg.Add(1)
		go b.pump(t, g)
	}
	go func() { <-sctx.Done(); b.leave(s); poke(g.wake) }()
	poke(g.wake)
	return s, nil
}

func (b *Bus) leave(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range s.g.members {
		if m == s {
			s.g.members = append(s.g.members[:i], s.g.members[i+1:]...)
			return
		}
	}
}

// pump delivers a group's messages in order until it has no member left.
func (b *Bus) pump(t *topic, g *group) {
	defer b.wg.Done()
	attempt := 1
	for {
		b.mu.Lock()
		if len(g.members) == 0 {
			g.running = false
			if g.live != "" {
				delete(t.groups, g.live)
			}
			b.mu.Unlock()
			return
		}
		if g.next >= len(t.log) {
			b.mu.Unlock()
			<-g.wake
			continue
		}
		s := g.members[g.turn%len(g.members)]
		g.turn++
		m := *t.log[g.next]
		b.mu.Unlock()

		m.Attempt = attempt
		m.Headers = copyHeaders(m.Headers)
		s.busy.Lock()
		err := s.h(s.ctx, &m)
		s.busy.Unlock()
		if err != nil && !bus.IsPermanent(err) {
			attempt++
			time.Sleep(time.Millisecond) // a failed message comes back at once, but not in a hot loop
			continue
		}
		b.mu.Lock()
		g.next++
		b.mu.Unlock()
		attempt = 1
	}
}

// Close stops the subscription and waits until its handler is not running.
func (s *subscription) Close() error {
	s.cancel()
	s.b.leave(s)
	poke(s.g.wake)
	s.busy.Lock()
	defer s.busy.Unlock()
	return nil
}

// Close closes every subscription and waits for running handlers.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	var subs []*subscription
	for _, t := range b.topics {
		for _, g := range t.groups {
			subs = append(subs, g.members...)
		}
	}
	b.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	b.wg.Wait()
	return nil
}

func copyHeaders(h map[string]string) map[string]string {
	c := make(map[string]string, len(h))
	for k, v := range h {
		c[k] = v
	}
	return c
}
