package bus

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Subscriptions is what an adapter needs to close everything it opened: the
// set of its live subscriptions and whether it is closed. The zero value is
// ready; it is safe for concurrent use.
type Subscriptions struct {
	mu     sync.Mutex
	subs   map[Subscription]struct{}
	closed bool
}

// Add records s; it returns ErrClosed (and records nothing) once Close has
// begun.
func (c *Subscriptions) Add(s Subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.subs == nil {
		c.subs = map[Subscription]struct{}{}
	}
	c.subs[s] = struct{}{}
	return nil
}

// Remove forgets s (it closed on its own).
func (c *Subscriptions) Remove(s Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, s)
}

// Closed reports whether Close has begun.
func (c *Subscriptions) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close marks the set closed and closes every subscription in it. It
// reports false when it was closed before, so the adapter closes its
// connection once.
func (c *Subscriptions) Close() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	subs := make([]Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	return true
}

// CloseWhenDone closes s when ctx ends, unless done closes first (s ended
// on its own). Adapters call it once per subscription; the goroutine it
// starts ends with one of the two.
func CloseWhenDone(ctx context.Context, s Subscription, done <-chan struct{}) {
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-done:
		}
	}()
}

// SubscribeAll subscribes h to each topic of handlers (topic -> handler)
// as group, in topic order, and returns the subscriptions. If one fails,
// those already made are closed and the error returned.
func SubscribeAll(ctx context.Context, sub Subscriber, group string, handlers map[string]Handler) ([]Subscription, error) {
	topics := make([]string, 0, len(handlers))
	for t := range handlers {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	subs := make([]Subscription, 0, len(topics))
	for _, t := range topics {
		s, err := sub.Subscribe(ctx, t, group, handlers[t])
		if err != nil {
			for _, s := range subs {
				_ = s.Close()
			}
			return nil, fmt.Errorf("subscribe %s to %s: %w", group, t, err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// LiveBuffer is how many messages a live subscription holds for a handler
// that is behind; past it, new ones are dropped (at most once).
const LiveBuffer = 4096

// Live is the running part of a LiveSubscriber's subscription: the
// adapter's broker callback hands each message to Offer, which never
// blocks, and one goroutine calls h with them in order.
type Live struct {
	msgs   chan *Message
	cancel context.CancelFunc
	stop   func()
	done   chan struct{}
	subs   *Subscriptions
	once   sync.Once
}

// StartLive runs h over what Offer is given until ctx ends or Close; stop
// ends the adapter's side (unsubscribes at the broker) and is called once,
// first, by Close. It is recorded in subs, so the adapter's Close closes
// it.
func StartLive(ctx context.Context, subs *Subscriptions, h Handler, stop func()) (*Live, error) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Live{msgs: make(chan *Message, LiveBuffer), cancel: cancel, stop: stop, done: make(chan struct{}), subs: subs}
	if err := subs.Add(l); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-hctx.Done():
				return
			case m := <-l.msgs:
				_ = h(hctx, m)
			}
		}
	}()
	CloseWhenDone(ctx, l, l.done)
	return l, nil
}

// Offer queues m for the handler, or drops it when the handler is
// LiveBuffer messages behind; it reports whether m was queued.
func (l *Live) Offer(m *Message) bool {
	select {
	case l.msgs <- m:
		return true
	default:
		return false
	}
}

// Close unsubscribes and waits for a running handler to return.
func (l *Live) Close() error {
	l.once.Do(func() {
		if l.stop != nil {
			l.stop()
		}
		l.cancel()
		<-l.done
		l.subs.Remove(l)
	})
	return nil
}
