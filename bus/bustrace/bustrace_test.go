package bustrace_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustrace"
	"github.com/junction-go/junction/bus/membus"
)

func setup(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	return rec, tp.Tracer("test")
}

func ended(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// deliver publishes m through a traced membus and returns the verdict of
// the handler's error once the process span has ended.
func deliver(t *testing.T, rec *tracetest.SpanRecorder, ctx context.Context, m *bus.Message, verdict error) {
	t.Helper()
	b := bustrace.Wrap(membus.New(), bustrace.Config{System: "membus"})
	t.Cleanup(func() { b.Close() })
	got := make(chan trace.SpanContext, 1)
	sub, err := b.Subscribe(context.Background(), "orders", "g", func(ctx context.Context, m *bus.Message) error {
		select {
		case got <- trace.SpanContextFromContext(ctx):
		default:
		}
		return verdict
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "orders", m); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-got:
		if !sc.IsValid() {
			t.Error("the handler's context has no span")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered within 10s")
	}
	_ = sub.Close() // waits for the handler, so its span has ended
}

// TestPublishWithoutTraceparent: a message published straight (not
// through the outbox) from traced work gets the send span's context, and
// its consumer's process span is that send span's child.
func TestPublishWithoutTraceparent(t *testing.T) {
	rec, tracer := setup(t)
	ctx, root := tracer.Start(context.Background(), "work")
	m := &bus.Message{ID: "m-1", Type: "OrderCreated", Source: "test", CorrelationID: "7"}
	deliver(t, rec, ctx, m, nil)
	root.End()

	if m.Headers["traceparent"] == "" {
		t.Fatal("the published message has no traceparent")
	}
	sends, procs := ended(rec, "send orders"), ended(rec, "process orders")
	if len(sends) != 1 || len(procs) != 1 {
		t.Fatalf("%d send and %d process spans, want 1 and 1", len(sends), len(procs))
	}
	send, proc := sends[0], procs[0]
	if send.Parent().SpanID() != root.SpanContext().SpanID() || send.SpanKind() != trace.SpanKindProducer {
		t.Errorf("send span: parent %s kind %s, want the work's span and producer", send.Parent().SpanID(), send.SpanKind())
	}
	if proc.Parent().SpanID() != send.SpanContext().SpanID() || proc.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Errorf("process span's parent = %s, want the send span %s in the same trace", proc.Parent().SpanID(), send.SpanContext().SpanID())
	}
	attrs := map[string]string{}
	for _, kv := range proc.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{
		"messaging.system": "membus", "messaging.destination.name": "orders", "messaging.consumer.group.name": "g",
		"messaging.message.id": "m-1", "messaging.message.conversation_id": "7", "messaging.operation.type": "process",
		"junction.message.delivery_count": "1",
	} {
		if attrs[k] != want {
			t.Errorf("process span %s = %q, want %q", k, attrs[k], want)
		}
	}
}

// TestPublishWithTraceparent: a message that carries its creation context
// (written to the outbox by traced work, published by a relay with none)
// is sent and processed in that trace: the send span is the creation's
// child and linked to it, the process span its child too.
func TestPublishWithTraceparent(t *testing.T) {
	rec, tracer := setup(t)
	cctx, create := tracer.Start(context.Background(), "create orders")
	m := &bus.Message{ID: "m-2", Type: "OrderCreated", Source: "test", Headers: map[string]string{}}
	otel.GetTextMapPropagator().Inject(cctx, propagation.MapCarrier(m.Headers))
	create.End()
	before := m.Headers["traceparent"]

	deliver(t, rec, context.Background(), m, nil)
	if m.Headers["traceparent"] != before {
		t.Errorf("publishing changed the traceparent from %s to %s", before, m.Headers["traceparent"])
	}
	send, proc := ended(rec, "send orders")[0], ended(rec, "process orders")[0]
	if send.Parent().SpanID() != create.SpanContext().SpanID() || len(send.Links()) != 1 || send.Links()[0].SpanContext.SpanID() != create.SpanContext().SpanID() {
		t.Errorf("send span: parent %s, links %v; want the create span %s as both", send.Parent().SpanID(), send.Links(), create.SpanContext().SpanID())
	}
	if proc.Parent().SpanID() != create.SpanContext().SpanID() {
		t.Errorf("process span's parent = %s, want the create span %s", proc.Parent().SpanID(), create.SpanContext().SpanID())
	}
}

// TestMessageWithoutTraceStartsOne: a message from an untraced producer
// still gets a process span, the root of a trace of its own.
func TestMessageWithoutTraceStartsOne(t *testing.T) {
	rec, _ := setup(t)
	deliver(t, rec, context.Background(), &bus.Message{ID: "m-3", Type: "X", Source: "test"}, nil)
	proc := ended(rec, "process orders")
	if len(proc) != 1 || !proc[0].SpanContext().IsValid() {
		t.Fatalf("process spans: %v", proc)
	}
}

// TestFailuresMarkTheSpan: a handler's failure is the process span's
// error, permanent or not.
func TestFailuresMarkTheSpan(t *testing.T) {
	for _, verdict := range []error{bus.Permanent(errors.New("malformed")), errors.New("database busy")} {
		rec, _ := setup(t)
		deliver(t, rec, context.Background(), &bus.Message{ID: "m-4", Type: "X", Source: "test"}, verdict)
		proc := ended(rec, "process orders")
		if len(proc) == 0 || proc[0].Status().Code != codes.Error || len(proc[0].Events()) == 0 {
			t.Errorf("%v: process span status %v, events %v; want an error with the exception event", verdict, proc[0].Status(), proc[0].Events())
		}
	}
}

// TestLiveSubscriptionsAreTraced: a wrapped adapter that follows topics
// live still does, with a process span per delivery and no group.
func TestLiveSubscriptionsAreTraced(t *testing.T) {
	rec, _ := setup(t)
	b := bustrace.Wrap(membus.New(), bustrace.Config{System: "membus"})
	t.Cleanup(func() { b.Close() })
	live, ok := b.(bus.LiveSubscriber)
	if !ok {
		t.Fatal("the wrapped membus does not follow topics live")
	}
	got := make(chan string, 1)
	sub, err := live.SubscribeLive(context.Background(), "history", func(_ context.Context, m *bus.Message) error {
		got <- m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := b.Publish(context.Background(), "history", &bus.Message{ID: "h-1", Type: "T", Source: "s", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-got:
		if id != "h-1" {
			t.Fatalf("got %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live delivery")
	}
	_ = sub.Close() // the handler has returned: its span has ended
	spans := ended(rec, "process history")
	if len(spans) != 1 {
		t.Fatalf("%d process spans, want 1", len(spans))
	}
	for _, a := range spans[0].Attributes() {
		if a.Key == "messaging.consumer.group.name" {
			t.Errorf("a live delivery's span names a group: %v", a.Value.AsString())
		}
	}
}
