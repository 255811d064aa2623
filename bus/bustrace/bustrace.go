// Package bustrace traces messages with OpenTelemetry, following its
// messaging conventions, around any bus adapter:
//
//   - Publish: a "send <topic>" span per message (kind producer). A message
//     that already carries a traceparent (one written to the outbox, whose
//     "create" span made it) gets a send span in that trace, linked to the
//     creation context; one without gets the send span's own context in
//     its headers, so it is created here.
//   - Subscribe: a "process <topic>" span per delivery (kind consumer) whose
//     parent is the message's creation context, so the producer, the
//     broker hop and the consumer are one trace; a message without a
//     traceparent starts a new trace. Handlers take one message at a time,
//     so a process span has one parent, never a batch of links.
//
// Spans carry messaging.system, messaging.destination.name,
// messaging.consumer.group.name, messaging.message.id,
// messaging.message.conversation_id (the correlation id) and
// junction.message.delivery_count.
package bustrace

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/bus"
)

const scope = "github.com/junction-go/junction/bus/bustrace"

// DeliveryCount is the attribute of a process span that counts the
// deliveries of its message (1 on the first).
const DeliveryCount = attribute.Key("junction.message.delivery_count")

// Bus is a connection that publishes and subscribes.
type Bus interface {
	bus.Publisher
	bus.Subscriber
}

// Config names the broker and lets a service add to a delivery's context.
type Config struct {
	// System is messaging.system: "nats", "kafka", "rabbitmq", "activemq".
	System string
	// OnProcess, when set, returns the context a handler runs in, from the
	// one with its process span (to add the order a message is about to
	// the logs, say).
	OnProcess func(ctx context.Context, m *bus.Message) context.Context
}

// Wrap returns b with its messages traced. When b follows topics live
// (bus.LiveSubscriber), so does what Wrap returns, with a process span per
// delivery too.
func Wrap(b Bus, cfg Config) Bus {
	t := &traced{Bus: b, cfg: cfg, tracer: otel.Tracer(scope)}
	if l, ok := b.(bus.LiveSubscriber); ok {
		return &tracedLive{traced: t, live: l}
	}
	return t
}

type tracedLive struct {
	*traced
	live bus.LiveSubscriber
}

func (t *tracedLive) SubscribeLive(ctx context.Context, topic string, h bus.Handler) (bus.Subscription, error) {
	return t.live.SubscribeLive(ctx, topic, t.process(topic, "", h))
}

type traced struct {
	Bus
	cfg    Config
	tracer trace.Tracer
}

// Extract returns ctx with the creation context of m (its traceparent) as
// its remote parent.
func Extract(ctx context.Context, m *bus.Message) context.Context {
	if len(m.Headers) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(m.Headers))
}

// Inject writes ctx's span context into m's headers (traceparent,
// tracestate, baggage).
func Inject(ctx context.Context, m *bus.Message) {
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(m.Headers))
}

func (t *traced) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		opts := []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				semconv.MessagingSystemKey.String(t.cfg.System),
				semconv.MessagingOperationTypeSend,
				semconv.MessagingOperationName("send"),
				semconv.MessagingDestinationName(topic),
				semconv.MessagingMessageID(m.ID),
				semconv.MessagingMessageConversationID(m.CorrelationID),
			),
		}
		parent := ctx
		created := trace.SpanContextFromContext(Extract(context.Background(), m))
		if created.IsValid() {
			parent = trace.ContextWithRemoteSpanContext(ctx, created)
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: created}))
		}
		sctx, span := t.tracer.Start(parent, "send "+topic, opts...)
		if !created.IsValid() {
			Inject(sctx, m)
		}
		spans[i] = span
	}
	err := t.Bus.Publish(ctx, topic, msgs...)
	for _, s := range spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "not acknowledged by the broker")
		}
		s.End()
	}
	return err
}

func (t *traced) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	return t.Bus.Subscribe(ctx, topic, group, t.process(topic, group, h))
}

// process wraps h with a process span per delivery (group "": a live
// subscription, which has none).
func (t *traced) process(topic, group string, h bus.Handler) bus.Handler {
	name := "process " + topic
	fixed := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(t.cfg.System),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
	}
	if group != "" {
		fixed = append(fixed, semconv.MessagingConsumerGroupName(group))
	}
	return func(ctx context.Context, m *bus.Message) error {
		ctx, span := t.tracer.Start(Extract(ctx, m), name,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(fixed...),
			trace.WithAttributes(
				semconv.MessagingMessageID(m.ID),
				semconv.MessagingMessageConversationID(m.CorrelationID),
				DeliveryCount.Int(m.Attempt),
				attribute.String("junction.message.type", m.Type),
			))
		defer span.End()
		if t.cfg.OnProcess != nil {
			ctx = t.cfg.OnProcess(ctx, m)
		}
		err := h(ctx, m)
		switch {
		case err == nil:
		case bus.IsPermanent(err):
			span.RecordError(err)
			span.SetStatus(codes.Error, "rejected")
		default:
			span.RecordError(err)
			span.SetStatus(codes.Error, "will be redelivered")
		}
		return err
	}
}

// Check passes the broker's round trip through, for readiness; an adapter
// that cannot tell is taken to answer.
func (t *traced) Check(ctx context.Context) error {
	if c, ok := t.Bus.(bus.Checker); ok {
		return c.Check(ctx)
	}
	return nil
}
