// Package bustest is the contract every bus adapter passes: one suite, run
// by each adapter's tests against a real broker, with the features the
// adapter promises declared so that a missing promise is visible rather
// than silently untested.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junction-go/junction/bus"
)

// Features are the promises an adapter makes beyond the basics every
// adapter keeps (publish and consume, fan-out to groups, competing
// consumers, order per key, redelivery after a failure and after a
// consumer goes away, a delivery count in Message.Attempt, dead letters,
// request-reply, clean close).
type Features struct {
	// PublishDedupe: the broker stores a message published twice with the
	// same id once (within its dedupe window).
	PublishDedupe bool
	// SharesWork: two members of a group both receive messages (Kafka
	// shares by partition, so a one-partition topic goes to one member).
	SharesWork bool
	// Replay: a group created after messages were published reads them
	// (the broker keeps a topic's history: NATS streams, Kafka logs), not
	// only those published after it joined (RabbitMQ, ActiveMQ queues).
	Replay bool
}

// Setup connects the suite to a broker.
type Setup struct {
	Features Features
	// New returns a publisher and a subscriber on a new connection to the
	// broker. The suite closes them.
	New func(t *testing.T) (bus.Publisher, bus.Subscriber)
	// Timeout bounds each wait for a delivery; 10 s when zero.
	Timeout time.Duration
	// InProcessBroker names the packages of a broker that runs inside the
	// test's process (embedded NATS, kfake), whose goroutines are its own
	// business and not leaks of the adapter.
	InProcessBroker []string
	// ClientLingers names functions of the broker's client library whose
	// goroutines are known to outlive Close (an upstream bug, stated where
	// it is set); they are not counted as the adapter's leaks.
	ClientLingers []string
	// Wire, when set, reads the broker as any client of it would, to check
	// that messages follow the adapter's CloudEvents binding; nil for an
	// adapter with no wire (membus).
	Wire *Wire
}

// Wire is a plain client of the broker, beside the adapter.
type Wire struct {
	// Binding is the CloudEvents binding the adapter promises.
	Binding bus.Binding
	// Listen starts reading topic with the broker's own client library,
	// before the suite publishes to it, and returns a function that waits
	// for the next message and returns its headers as that client shows
	// them, the protocol's content type (a header or a property) under
	// "content-type".
	Listen func(t *testing.T, topic string) (next func() map[string]string)
}

// Run runs the whole contract.
func Run(t *testing.T, s Setup) {
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Setup)
	}{
		{"PublishConsume", testPublishConsume},
		{"FanOutToGroups", testFanOut},
		{"CompetingConsumers", testCompeting},
		{"OrderPerKey", testOrderPerKey},
		{"RedeliveryAfterFailure", testRedeliveryAfterFailure},
		{"RedeliveryAfterConsumerGoes", testRedeliveryAfterClose},
		{"DeadLetter", testDeadLetter},
		{"ReliableStackLosesNothing", testReliableStack},
		{"PublishDedupe", testDedupe},
		{"RequestReply", testRequestReply},
		{"NewGroupReadsFromTheStart", testNewGroupFromStart},
		{"CloudEventsOnTheWire", testWire},
		{"LiveSubscription", testLive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Registered first, so it runs after every other cleanup
			// (subscriptions, connections) has closed what it owns.
			t.Cleanup(checkLeaks(t, append(slices.Clone(s.InProcessBroker), s.ClientLingers...)))
			tt.fn(t, s)
		})
	}
}

// uniqueTopic returns a topic name no other test uses.
func uniqueTopic(t *testing.T) string {
	return fmt.Sprintf("bustest-%s", bus.NewID()[:12])
}

func open(t *testing.T, s Setup) (bus.Publisher, bus.Subscriber) {
	t.Helper()
	pub, sub := s.New(t)
	t.Cleanup(func() {
		if err := sub.Close(); err != nil {
			t.Errorf("subscriber Close = %v", err)
		}
		if err := pub.Close(); err != nil {
			t.Errorf("publisher Close = %v", err)
		}
	})
	return pub, sub
}

func msg(i int, key string) *bus.Message {
	return &bus.Message{
		ID: bus.NewID(), Type: "TestEvent", Source: "bustest", Time: time.Now().UTC().Truncate(time.Millisecond),
		Key: key, CorrelationID: "corr-" + key, CausationID: "cause-" + strconv.Itoa(i),
		Headers: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-seq": strconv.Itoa(i)},
		Body:    []byte(fmt.Sprintf(`{"n":%d}`, i)),
	}
}

// collector records deliveries.
type collector struct {
	mu   sync.Mutex
	got  []*bus.Message
	wake chan struct{}
}

func newCollector() *collector { return &collector{wake: make(chan struct{}, 1)} }

func (c *collector) add(m *bus.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *collector) handler(ctx context.Context, m *bus.Message) error {
	c.add(m)
	return nil
}

func (c *collector) snapshot() []*bus.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*bus.Message(nil), c.got...)
}

// waitFor waits until cond holds over the deliveries so far.
func (c *collector) waitFor(t *testing.T, timeout time.Duration, what string, cond func([]*bus.Message) bool) []*bus.Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		got := c.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-c.wake:
		case <-deadline:
			t.Fatalf("%s: not within %v (have %d deliveries)", what, timeout, len(got))
		}
	}
}

func uniqueIDs(ms []*bus.Message) map[string]int {
	ids := map[string]int{}
	for _, m := range ms {
		ids[m.ID]++
	}
	return ids
}

func subscribe(t *testing.T, sub bus.Subscriber, topic, group string, h bus.Handler) bus.Subscription {
	t.Helper()
	s, err := sub.Subscribe(context.Background(), topic, group, h)
	if err != nil {
		t.Fatalf("Subscribe(%s, %s) = %v", topic, group, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t *testing.T, pub bus.Publisher, topic string, ms ...*bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, topic, ms...); err != nil {
		t.Fatalf("Publish(%s, %d messages) = %v", topic, len(ms), err)
	}
}

func testPublishConsume(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	c := newCollector()
	subscribe(t, sub, topic, "g", c.handler)
	var sent []*bus.Message
	for i := range 10 {
		sent = append(sent, msg(i, "k"+strconv.Itoa(i%3)))
	}
	publish(t, pub, topic, sent[:5]...)
	for _, m := range sent[5:] {
		publish(t, pub, topic, m)
	}
	got := c.waitFor(t, s.Timeout, "10 deliveries", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == 10 })
	byID := map[string]*bus.Message{}
	for _, m := range got {
		byID[m.ID] = m
	}
	for _, want := range sent {
		m := byID[want.ID]
		if m == nil {
			t.Fatalf("message %s not delivered", want.ID)
		}
		if m.Type != want.Type || m.Source != want.Source || !m.Time.Equal(want.Time) || m.Key != want.Key ||
			m.CorrelationID != want.CorrelationID || m.CausationID != want.CausationID || string(m.Body) != string(want.Body) ||
			m.Headers["traceparent"] != want.Headers["traceparent"] || m.Headers["x-seq"] != want.Headers["x-seq"] {
			t.Errorf("delivered %+v\nwant       %+v", m, want)
		}
		if m.Topic != topic || m.Attempt != 1 {
			t.Errorf("delivered topic %q attempt %d, want %q 1", m.Topic, m.Attempt, topic)
		}
	}
	if err := pub.Publish(context.Background(), topic, &bus.Message{ID: "", Type: "X"}); err == nil {
		t.Error("Publish of a message without an id succeeded")
	}
}

func testFanOut(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	a, b := newCollector(), newCollector()
	subscribe(t, sub, topic, "group-a", a.handler)
	subscribe(t, sub, topic, "group-b", b.handler)
	var sent []*bus.Message
	for i := range 20 {
		sent = append(sent, msg(i, ""))
	}
	publish(t, pub, topic, sent...)
	for name, c := range map[string]*collector{"group-a": a, "group-b": b} {
		c.waitFor(t, s.Timeout, name+" gets all 20", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == 20 })
	}
}

func testCompeting(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	_, sub2 := open(t, s)
	topic := uniqueTopic(t)
	all := newCollector()
	var mu sync.Mutex
	per := map[string]int{}
	member := func(name string) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			per[name]++
			mu.Unlock()
			time.Sleep(time.Millisecond) // let the other member take a turn
			all.add(m)
			return nil
		}
	}
	subscribe(t, sub, topic, "workers", member("one"))
	subscribe(t, sub2, topic, "workers", member("two"))
	var sent []*bus.Message
	for i := range 100 {
		sent = append(sent, msg(i, strconv.Itoa(i)))
	}
	publish(t, pub, topic, sent...)
	got := all.waitFor(t, s.Timeout, "100 deliveries", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == 100 })
	for id, n := range uniqueIDs(got) {
		if n > 1 {
			t.Errorf("message %s handled %d times by one group without a failure", id, n)
		}
	}
	if !s.Features.SharesWork {
		return
	}
	// Both members share the work. The second may not yet be fetching
	// when the first batch arrives, and a broker may hand a whole batch to
	// the one that asked first: so more messages go out, one at a time,
	// until each member has taken some (or the timeout says they never
	// share).
	shared := func() bool { mu.Lock(); defer mu.Unlock(); return per["one"] > 0 && per["two"] > 0 }
	deadline := time.Now().Add(s.Timeout)
	for i := 100; !shared(); i++ {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("work per member = %v after %v, want both to take some", per, s.Timeout)
		}
		publish(t, pub, topic, msg(i, strconv.Itoa(i)))
		all.waitFor(t, s.Timeout, "the extra message", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == i+1 })
	}
}

func testOrderPerKey(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	c := newCollector()
	subscribe(t, sub, topic, "g", func(ctx context.Context, m *bus.Message) error {
		time.Sleep(time.Duration(len(m.ID)%3) * time.Millisecond)
		c.add(m)
		return nil
	})
	keys := []string{"order-1", "order-2", "order-3", "order-4"}
	var sent []*bus.Message
	for i := range 120 {
		sent = append(sent, msg(i, keys[i%len(keys)]))
	}
	for i := 0; i < len(sent); i += 10 {
		publish(t, pub, topic, sent[i:i+10]...)
	}
	got := c.waitFor(t, s.Timeout, "120 deliveries", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == 120 })
	last := map[string]int{}
	for _, m := range got {
		seq, _ := strconv.Atoi(m.Headers["x-seq"])
		if prev, ok := last[m.Key]; ok && seq < prev {
			t.Errorf("key %s: message %d handled after %d", m.Key, seq, prev)
		}
		last[m.Key] = seq
	}
}

func testRedeliveryAfterFailure(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	c := newCollector()
	subscribe(t, sub, topic, "g", func(ctx context.Context, m *bus.Message) error {
		c.add(m)
		if len(c.snapshot()) == 1 {
			return errors.New("transient failure")
		}
		return nil
	})
	publish(t, pub, topic, msg(1, "k"))
	got := c.waitFor(t, s.Timeout, "a second delivery after a failure", func(ms []*bus.Message) bool { return len(ms) >= 2 })
	if got[0].ID != got[1].ID {
		t.Fatalf("redelivered %s, want %s again", got[1].ID, got[0].ID)
	}
	if got[0].Attempt != 1 || got[1].Attempt != 2 {
		t.Errorf("attempts = %d, %d; want 1, 2", got[0].Attempt, got[1].Attempt)
	}
}

func testRedeliveryAfterClose(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	_, sub2 := open(t, s)
	topic := uniqueTopic(t)
	started := make(chan struct{})
	var once sync.Once
	first, err := sub.Subscribe(context.Background(), topic, "g", func(ctx context.Context, m *bus.Message) error {
		once.Do(func() { close(started) })
		<-ctx.Done() // never finishes: the consumer goes away mid-message
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	m := msg(1, "k")
	publish(t, pub, topic, m)
	select {
	case <-started:
	case <-time.After(s.Timeout):
		t.Fatal("first consumer never got the message")
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	c := newCollector()
	subscribe(t, sub2, topic, "g", c.handler)
	got := c.waitFor(t, s.Timeout, "redelivery to the next member", func(ms []*bus.Message) bool { return len(ms) >= 1 })
	if got[0].ID != m.ID {
		t.Errorf("second member got %s, want %s", got[0].ID, m.ID)
	}
}

// deadLetters collects the dead letters of topic: those of every test
// share one topic, and each takes only its own.
func deadLetters(t *testing.T, sub bus.Subscriber, topic string) *collector {
	dead := newCollector()
	subscribe(t, sub, bus.DeadLetterTopic, "dlq-"+topic, func(ctx context.Context, m *bus.Message) error {
		if m.Headers[bus.HeaderDLQTopic] == topic {
			dead.add(m)
		}
		return nil
	})
	return dead
}

func testDeadLetter(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	dead := deadLetters(t, sub, topic)
	good := newCollector()
	poison := msg(0, "p")
	h := bus.Chain(func(ctx context.Context, m *bus.Message) error {
		if m.Type == "Poison" {
			return errors.New("cannot handle this one")
		}
		good.add(m)
		return nil
	}, bus.DeadLetter(pub, "g", 3, nil), bus.Retry(2, time.Millisecond, 5*time.Millisecond))
	subscribe(t, sub, topic, "g", h)
	poison.Type = "Poison"
	var rest []*bus.Message
	for i := 1; i <= 20; i++ {
		rest = append(rest, msg(i, strconv.Itoa(i)))
	}
	publish(t, pub, topic, append([]*bus.Message{poison}, rest...)...)
	good.waitFor(t, s.Timeout, "the 20 good messages", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == 20 })
	got := dead.waitFor(t, s.Timeout, "the poison message dead-lettered", func(ms []*bus.Message) bool { return len(ms) >= 1 })
	d := got[0]
	if d.Headers[bus.HeaderDLQReason] == "" || d.Headers[bus.HeaderDLQGroup] != "g" || string(d.Body) != string(poison.Body) || d.Type != "Poison" {
		t.Errorf("dead letter = %+v, want the poison body with reason, topic and group", d)
	}
	if d.Headers[bus.HeaderDLQAttempts] != "3" {
		t.Errorf("dead letter after %s deliveries, want 3", d.Headers[bus.HeaderDLQAttempts])
	}
}

// testReliableStack runs the stack every service's consumer uses
// (bus.Reliable, as configured by the services) around a handler that
// panics on some messages, fails permanently on others, fails transiently
// on the first deliveries of others, never recovers on others, and fails
// transiently on messages with a deadline (a saga's commands): each
// message must end handled, as a dead letter with its reason, or (with a
// deadline) dropped once past it, never started late; none may vanish.
// lateSlack is how long past its deadline a start may be seen by the
// handler's own clock on a loaded machine.
const lateSlack = 100 * time.Millisecond

func testReliableStack(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	dead := deadLetters(t, sub, topic)
	const maxDeliveries = 3
	kinds := []string{"Fine", "Panics", "Permanent", "Flaky", "Broken", "Expiring"}
	handled := newCollector()
	var mu sync.Mutex
	var lateCalls []string
	h := bus.Reliable(func(ctx context.Context, m *bus.Message) error {
		switch m.Type {
		case "Expiring":
			// Its sender retries it after its deadline: redelivered until
			// then, never dead-lettered, never started after it. The
			// middleware checks the deadline just before it calls here; a
			// start within lateSlack of it is that gap, not a late start
			// (which would go on until the test ends).
			if d, _ := bus.Deadline(m); !time.Now().Before(d.Add(lateSlack)) {
				mu.Lock()
				lateCalls = append(lateCalls, m.ID)
				mu.Unlock()
			}
			return errors.New("busy until the deadline")
		case "Panics":
			panic("handler bug on " + m.ID)
		case "Permanent":
			return bus.Permanent(errors.New("malformed"))
		case "Flaky":
			if m.Attempt < 2 {
				return errors.New("busy, try again")
			}
		case "Broken":
			return errors.New("still busy")
		}
		handled.add(m)
		return nil
	}, bus.ReliableConfig{DeadLetters: pub, Group: "g", MaxDeliveries: maxDeliveries})
	subscribe(t, sub, topic, "g", h)
	var all []*bus.Message
	for i := range 20 {
		m := msg(i, strconv.Itoa(i))
		m.Type = kinds[i%len(kinds)]
		if m.Type == "Expiring" {
			m.Headers[bus.HeaderDeadline] = strconv.FormatInt(time.Now().Add(500*time.Millisecond).UnixNano(), 10)
		}
		all = append(all, m)
	}
	publish(t, pub, topic, all...)

	wantHandled, wantDead := map[string]bool{}, map[string]string{}
	for _, m := range all {
		switch m.Type {
		case "Fine", "Flaky":
			wantHandled[m.ID] = true
		case "Expiring":
		default:
			wantDead[m.ID] = m.Type
		}
	}
	handled.waitFor(t, s.Timeout, "every message that can be handled", func(ms []*bus.Message) bool { return len(uniqueIDs(ms)) == len(wantHandled) })
	got := dead.waitFor(t, s.Timeout, "every message that cannot be handled, as a dead letter", func(ms []*bus.Message) bool {
		seen := map[string]bool{}
		for _, d := range ms {
			seen[d.Headers[bus.HeaderDLQID]] = true
		}
		return len(seen) == len(wantDead)
	})
	for id := range uniqueIDs(handled.snapshot()) {
		if !wantHandled[id] {
			t.Errorf("message %s handled, want it dead-lettered", id)
		}
	}
	for _, d := range got {
		id := d.Headers[bus.HeaderDLQID]
		kind, ok := wantDead[id]
		if !ok {
			t.Errorf("message %s (%s) dead-lettered, want it handled", id, d.Type)
			continue
		}
		reason := d.Headers[bus.HeaderDLQReason]
		switch {
		case kind == "Panics" && !strings.Contains(reason, "panicked"),
			kind == "Permanent" && !strings.Contains(reason, "malformed"),
			kind == "Broken" && !strings.Contains(reason, "still busy"):
			t.Errorf("dead letter of a %s message has reason %q", kind, reason)
		}
		if kind == "Broken" && d.Headers[bus.HeaderDLQAttempts] != strconv.Itoa(maxDeliveries) {
			t.Errorf("a transiently failing message was dead-lettered on delivery %s, want %d", d.Headers[bus.HeaderDLQAttempts], maxDeliveries)
		}
		if kind != "Broken" && d.Headers[bus.HeaderDLQAttempts] != "1" {
			t.Errorf("a %s message was dead-lettered on delivery %s, want 1", kind, d.Headers[bus.HeaderDLQAttempts])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lateCalls) > 0 {
		t.Errorf("messages started after their deadline: %v", lateCalls)
	}
}

func testDedupe(t *testing.T, s Setup) {
	if !s.Features.PublishDedupe {
		t.Skip("the adapter does not promise publish dedupe; consumers dedupe by id")
	}
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	c := newCollector()
	subscribe(t, sub, topic, "g", c.handler)
	a, b := msg(1, "same-key"), msg(2, "same-key")
	publish(t, pub, topic, a)
	publish(t, pub, topic, a) // a retry after a lost ack
	publish(t, pub, topic, b)
	got := c.waitFor(t, s.Timeout, "the message after the duplicate", func(ms []*bus.Message) bool { return uniqueIDs(ms)[b.ID] > 0 })
	if n := uniqueIDs(got)[a.ID]; n != 1 {
		t.Errorf("message published twice delivered %d times, want 1", n)
	}
}

func testRequestReply(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	replies := "replies-" + topic
	subscribe(t, sub, topic, "responders", func(ctx context.Context, m *bus.Message) error {
		return bus.Reply(ctx, pub, m, &bus.Message{ID: bus.NewID(), Type: "Pong", Source: "bustest", Body: append([]byte("re:"), m.Body...)})
	})
	r, err := bus.NewRequester(context.Background(), pub, sub, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	for i := range 3 {
		req := msg(i, "")
		req.Type = "Ping"
		resp, err := r.Request(ctx, topic, req)
		if err != nil {
			t.Fatalf("Request %d = %v", i, err)
		}
		if resp.Type != "Pong" || string(resp.Body) != "re:"+string(req.Body) || resp.CorrelationID != req.ID {
			t.Errorf("reply = %+v, want a Pong to %s", resp, req.ID)
		}
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	// With nobody to answer, the request fails: at its deadline, or at once
	// where the broker refuses a message no one would receive.
	if _, err := r.Request(short, "nobody-listens-"+topic, msg(9, "")); err == nil {
		t.Error("Request with no responder succeeded")
	}
}

func testNewGroupFromStart(t *testing.T, s Setup) {
	if !s.Features.Replay {
		t.Skip("the broker keeps no history for new groups; a group reads what is published after it joined")
	}
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	early := newCollector()
	subscribe(t, sub, topic, "early", early.handler) // creates the topic
	m := msg(1, "k")
	publish(t, pub, topic, m)
	early.waitFor(t, s.Timeout, "first group", func(ms []*bus.Message) bool { return len(ms) >= 1 })
	late := newCollector()
	subscribe(t, sub, topic, "late", late.handler)
	got := late.waitFor(t, s.Timeout, "a group created after the publish reads it", func(ms []*bus.Message) bool { return len(ms) >= 1 })
	if got[0].ID != m.ID {
		t.Errorf("late group got %s, want %s", got[0].ID, m.ID)
	}
}

// testWire publishes a message with every attribute and an extension and
// reads it as a plain client of the broker: the attributes must carry the
// binding's names, the content type must be where the protocol keeps it,
// and no other binding's names may appear.
func testWire(t *testing.T, s Setup) {
	if s.Wire == nil {
		t.Skip("the adapter has no wire to read")
	}
	pub, sub := open(t, s)
	topic := uniqueTopic(t)
	// A group, so brokers that drop what no group would receive keep it.
	subscribe(t, sub, topic, "g", func(context.Context, *bus.Message) error { return nil })
	next := s.Wire.Listen(t, topic)
	m := msg(1, "order-7")
	m.Headers[bus.HeaderReplyTo] = "replies"
	publish(t, pub, topic, m)
	h := next()
	p := s.Wire.Binding.Prefix
	want := map[string]string{
		p + "id": m.ID, p + "type": m.Type, p + "source": m.Source, p + "specversion": "1.0",
		p + "time":         m.Time.UTC().Format(time.RFC3339Nano),
		p + "partitionkey": m.Key, p + "correlationid": m.CorrelationID, p + "causationid": m.CausationID,
		p + "replyto": "replies", "traceparent": m.Headers["traceparent"], "content-type": "application/json",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("on the wire %s = %q, want %q (all headers: %v)", k, h[k], v, h)
		}
	}
	for k := range h {
		for _, other := range []string{"ce-", "ce_", "cloudEvents:"} {
			if other != p && strings.HasPrefix(k, other) {
				t.Errorf("on the wire: %s uses another binding's names than %q", k, p)
			}
		}
	}
}

// testLive: two live subscriptions each get every message published after
// they are in place, none from before, each once even when the handler
// fails, and none after Close; a group on the same topic is unaffected.
func testLive(t *testing.T, s Setup) {
	pub, sub := open(t, s)
	ls, ok := sub.(bus.LiveSubscriber)
	if !ok {
		t.Fatalf("%T does not implement bus.LiveSubscriber", sub)
	}
	topic := uniqueTopic(t)
	grp := newCollector()
	subscribe(t, sub, topic, "g", grp.handler) // so brokers that refuse what no queue receives take it
	before := msg(0, "k")
	publish(t, pub, topic, before)
	grp.waitFor(t, s.Timeout, "the group reads the first message", func(ms []*bus.Message) bool { return len(ms) >= 1 })

	failing, steady := newCollector(), newCollector()
	a, err := ls.SubscribeLive(context.Background(), topic, func(ctx context.Context, m *bus.Message) error {
		failing.add(m)
		return errors.New("this handler always fails")
	})
	if err != nil {
		t.Fatalf("SubscribeLive: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err := ls.SubscribeLive(context.Background(), topic, steady.handler)
	if err != nil {
		t.Fatalf("SubscribeLive: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })

	m1, m2 := msg(1, "k"), msg(2, "k")
	publish(t, pub, topic, m1, m2)
	ids := func(ms []*bus.Message) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	want := []string{m1.ID, m2.ID}
	if got := ids(steady.waitFor(t, s.Timeout, "a live subscription gets what follows it", func(ms []*bus.Message) bool { return len(ms) >= 2 })); !slices.Equal(got, want) {
		t.Errorf("live subscription got %v, want %v (and not %s, published before it)", got, want, before.ID)
	}
	failing.waitFor(t, s.Timeout, "the other live subscription gets them too", func(ms []*bus.Message) bool { return len(ms) >= 2 })
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	m3 := msg(3, "k")
	publish(t, pub, topic, m3)
	if got := ids(steady.waitFor(t, s.Timeout, "the open live subscription gets the next", func(ms []*bus.Message) bool { return len(ms) >= 3 })); !slices.Equal(got, append(want, m3.ID)) {
		t.Errorf("live subscription got %v, want %v", got, append(want, m3.ID))
	}
	grp.waitFor(t, s.Timeout, "the group gets every message", func(ms []*bus.Message) bool { return len(ms) >= 4 })
	// After Close nothing may reach the closed subscription, m3 above all;
	// before it, the failing handler had each message once (a redelivery
	// that came then would show as a third call).
	if got := ids(failing.snapshot()); !slices.Equal(got, want) {
		t.Errorf("failing, then closed, live subscription got %v, want %v once each and nothing after Close", got, want)
	}
}
