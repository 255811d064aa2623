package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// Requester sends requests and waits for their replies, which come back on
// a reply topic of its own. It is safe for concurrent use.
type Requester struct {
	pub        Publisher
	sub        Subscription
	replyTopic string

	mu      sync.Mutex
	waiting map[string]chan *Message
}

// NewRequester subscribes to replyTopic (which must be unique to this
// requester, e.g. named after its instance) and returns a requester that
// publishes with pub. Close it when done.
func NewRequester(ctx context.Context, pub Publisher, sub Subscriber, replyTopic string) (*Requester, error) {
	r := &Requester{pub: pub, replyTopic: replyTopic, waiting: map[string]chan *Message{}}
	s, err := sub.Subscribe(ctx, replyTopic, replyTopic, r.deliver)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe to replies: %w", err)
	}
	r.sub = s
	return r, nil
}

// deliver hands a reply to its waiting request; a late or unknown reply is
// dropped.
func (r *Requester) deliver(_ context.Context, m *Message) error {
	r.mu.Lock()
	ch := r.waiting[m.CorrelationID]
	delete(r.waiting, m.CorrelationID)
	r.mu.Unlock()
	if ch != nil {
		ch <- m
	}
	return nil
}

// Request publishes m to topic with the reply topic and ctx's deadline in
// its headers, and waits for the reply (correlated by m's id) until ctx is
// done.
func (r *Requester) Request(ctx context.Context, topic string, m *Message) (*Message, error) {
	req := *m
	req.Headers = make(map[string]string, len(m.Headers)+2)
	for k, v := range m.Headers {
		req.Headers[k] = v
	}
	req.Headers[HeaderReplyTo] = r.replyTopic
	if d, ok := ctx.Deadline(); ok {
		req.Headers[HeaderDeadline] = strconv.FormatInt(d.UnixNano(), 10)
	}
	ch := make(chan *Message, 1)
	r.mu.Lock()
	r.waiting[req.ID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, req.ID)
		r.mu.Unlock()
	}()
	if err := r.pub.Publish(ctx, topic, &req); err != nil {
		return nil, err
	}
	select {
	case reply := <-ch:
		return reply, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops listening for replies.
func (r *Requester) Close() error { return r.sub.Close() }

// Reply publishes resp as the answer to req, to the reply topic req names.
// A request without one is a Permanent error.
func Reply(ctx context.Context, pub Publisher, req, resp *Message) error {
	to := req.Headers[HeaderReplyTo]
	if to == "" {
		return Permanent(errors.New("bus: the request names no reply topic"))
	}
	resp.CorrelationID = req.ID
	resp.CausationID = req.ID
	return pub.Publish(ctx, to, resp)
}
