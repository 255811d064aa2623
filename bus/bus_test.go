package bus_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/junction-go/junction/bus"
)

func TestHeadersRoundTrip(t *testing.T) {
	m := &bus.Message{
		ID: "id-1", Type: "OrderCreated", Source: "order-service", Time: time.Date(2026, 11, 28, 1, 2, 3, 456000000, time.UTC),
		Key: "123", CorrelationID: "123", CausationID: "cmd-9",
		Headers: map[string]string{"traceparent": "00-abc-def-01"}, Body: []byte(`{"event":"OrderCreated"}`),
	}
	h := bus.ToHeaders(m)
	if h["ce-specversion"] != "1.0" || h["ce-id"] != "id-1" || h["ce-type"] != "OrderCreated" || h["ce-partitionkey"] != "123" {
		t.Errorf("ToHeaders = %v, want CloudEvents binary-mode attributes", h)
	}
	// Transports may change the case of header names.
	upper := map[string]string{}
	for k, v := range h {
		upper[canonical(k)] = v
	}
	if diff := cmp.Diff(m, bus.FromHeaders(upper, m.Body)); diff != "" {
		t.Errorf("FromHeaders(ToHeaders(m)) differs (-want +got):\n%s", diff)
	}
}

// canonical canonicalises a header name the way net/http and NATS do.
func canonical(k string) string {
	b := []byte(k)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
		up = c == '-'
	}
	return string(b)
}

func TestRetryStopsAtPermanentAndAtTheLimit(t *testing.T) {
	calls := 0
	transient := bus.Chain(func(context.Context, *bus.Message) error { calls++; return errors.New("busy") }, bus.Retry(3, time.Microsecond, time.Millisecond))
	if err := transient(context.Background(), &bus.Message{}); err == nil || calls != 3 {
		t.Errorf("transient: err %v after %d calls, want an error after 3", err, calls)
	}
	calls = 0
	permanent := bus.Chain(func(context.Context, *bus.Message) error { calls++; return bus.Permanent(errors.New("bad")) }, bus.Retry(3, time.Microsecond, time.Millisecond))
	if err := permanent(context.Background(), &bus.Message{}); !bus.IsPermanent(err) || calls != 1 {
		t.Errorf("permanent: err %v after %d calls, want it at once", err, calls)
	}
}

func TestRecoverMakesAPanicPermanent(t *testing.T) {
	h := bus.Chain(func(context.Context, *bus.Message) error { panic("boom") }, bus.Recover())
	if err := h(context.Background(), &bus.Message{}); !bus.IsPermanent(err) {
		t.Errorf("after a panic: %v, want a permanent error", err)
	}
}

func TestSkipExpired(t *testing.T) {
	called := false
	h := bus.Chain(func(context.Context, *bus.Message) error { called = true; return nil }, bus.SkipExpired())
	old := &bus.Message{Headers: map[string]string{bus.HeaderDeadline: "1"}}
	if err := h(context.Background(), old); err != nil || called {
		t.Errorf("expired message: err %v, handler called %v; want it dropped", err, called)
	}
	called = false
	live := &bus.Message{Headers: map[string]string{bus.HeaderDeadline: strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10)}}
	var hasDeadline bool
	h = bus.Chain(func(ctx context.Context, _ *bus.Message) error {
		called = true
		_, hasDeadline = ctx.Deadline()
		return nil
	}, bus.SkipExpired())
	if err := h(context.Background(), live); err != nil || !called || hasDeadline {
		t.Errorf("message due in an hour: err %v, called %v, context deadline %v; want it handled, not cut off at its deadline", err, called, hasDeadline)
	}
}

func TestDeadLetterLeavesADeadlinedMessageToItsSender(t *testing.T) {
	pub := &countingPublisher{}
	h := bus.Chain(func(context.Context, *bus.Message) error { return errors.New("busy") }, bus.DeadLetter(pub, "g", 2, nil))
	owned := &bus.Message{ID: "a", Attempt: 9, Headers: map[string]string{bus.HeaderDeadline: strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10)}}
	if err := h(context.Background(), owned); err == nil || pub.n != 0 {
		t.Errorf("a deadlined message failing on delivery 9 of 2: err %v, %d dead letters; want it redelivered", err, pub.n)
	}
	plain := &bus.Message{ID: "b", Type: "T", Attempt: 2, Headers: map[string]string{}} // no source: its publisher named none
	if err := h(context.Background(), plain); err != nil || pub.n != 1 {
		t.Errorf("a message failing on delivery 2 of 2: err %v, %d dead letters; want it dead-lettered", err, pub.n)
	}
}

type countingPublisher struct{ n int }

func (p *countingPublisher) Publish(_ context.Context, topic string, msgs ...*bus.Message) error {
	for _, m := range msgs {
		if err := bus.Validate(topic, m); err != nil {
			return err
		}
	}
	p.n += len(msgs)
	return nil
}

func (p *countingPublisher) Close() error { return nil }

// TestLanesKeepKeyOrder: messages of one key are handled one at a time, in
// the order given, whatever lane they hash to.
func TestLanesKeepKeyOrder(t *testing.T) {
	var mu sync.Mutex
	last := map[string]int{}
	bad := 0
	l := bus.NewLanes(context.Background(), 4, 2, func(_ context.Context, m *bus.Message) error {
		n, _ := strconv.Atoi(m.ID)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[m.Key]; ok && n < prev {
			bad++
		}
		last[m.Key] = n
		return nil
	})
	var wg sync.WaitGroup
	for i := range 2000 {
		wg.Add(1)
		l.Dispatch(&bus.Message{ID: strconv.Itoa(i), Key: "k" + strconv.Itoa(i%7)}, func(error) { wg.Done() })
	}
	wg.Wait()
	l.Close()
	if bad != 0 || len(last) != 7 {
		t.Errorf("%d out of order over %d keys; want 0 over 7", bad, len(last))
	}
}
