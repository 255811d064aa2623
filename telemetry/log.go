// Package telemetry holds what every Junction process reports about itself:
// JSON logs that name the service and carry the request id, the trace and
// the order of the work they describe; Prometheus metrics; OpenTelemetry
// traces.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type orderIDKey struct{}

// WithOrderID returns ctx carrying the order its work is about: log lines
// written with it carry order_id, and the current span gets the attribute
// order.id (by which the trace store finds an order's traces).
func WithOrderID(ctx context.Context, id int64) context.Context {
	trace.SpanFromContext(ctx).SetAttributes(attribute.Int64("order.id", id))
	return context.WithValue(ctx, orderIDKey{}, id)
}

// OrderID returns the order id carried by ctx, or 0.
func OrderID(ctx context.Context) int64 {
	id, _ := ctx.Value(orderIDKey{}).(int64)
	return id
}

// NewLogger returns a JSON logger writing to w whose every record names the
// service and instance, and carries the request id, trace_id, span_id and
// order_id of the context it is logged with (use the …Context methods), at
// the top level of the record even when the logger has groups.
func NewLogger(w io.Writer, level slog.Level, service, instance string) *slog.Logger {
	return NewLoggerFormat(w, level, FormatJSON, service, instance)
}

// Log formats.
const (
	// FormatJSON is slog's JSON: time, level, msg and the attributes.
	FormatJSON = "json"
	// FormatECS names the fields as Elastic Common Schema does, for an
	// ELK pipeline: @timestamp, log.level, message, service.name,
	// service.node.name, http.request.id, trace.id, span.id, error.message,
	// ecs.version.
	FormatECS = "ecs"
)

// ecsNames are the ECS names of Junction's own top-level fields.
var ecsNames = map[string]string{
	slog.TimeKey: "@timestamp", slog.LevelKey: "log.level", slog.MessageKey: "message",
	"service": "service.name", "instance": "service.node.name", "request_id": "http.request.id", "err": "error.message",
	"trace_id": "trace.id", "span_id": "span.id",
}

// NewLoggerFormat is NewLogger in format (FormatJSON or FormatECS).
func NewLoggerFormat(w io.Writer, level slog.Level, format, service, instance string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == FormatECS {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			if n, ok := ecsNames[a.Key]; ok {
				a.Key = n
			}
			if a.Key == "log.level" {
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			}
			return a
		}
		h = slog.NewJSONHandler(w, opts).WithAttrs([]slog.Attr{slog.String("ecs.version", "8.11.0")})
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(contextHandler{root: h, h: h}).With("service", service, "instance", instance)
}

// contextHandler adds the values a context carries to each record, at the
// top level: it keeps the handler before any group (root) and what was
// done to it since (ops), to replay them after adding those values.
type contextHandler struct {
	root slog.Handler
	h    slog.Handler // root with ops applied
	ops  []func(slog.Handler) slog.Handler
	// grouped is true once a group was opened: until then attributes can
	// go straight on h.
	grouped bool
}

func (c contextHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }

// contextAttrs are the attributes ctx carries for a log line.
func contextAttrs(ctx context.Context) []slog.Attr {
	var attrs []slog.Attr
	if id := RequestID(ctx); id != "" {
		attrs = append(attrs, slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if id := OrderID(ctx); id != 0 {
		attrs = append(attrs, slog.String("order_id", strconv.FormatInt(id, 10)))
	}
	return attrs
}

func (c contextHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := contextAttrs(ctx)
	if len(attrs) == 0 {
		return c.h.Handle(ctx, r)
	}
	if !c.grouped {
		r.AddAttrs(attrs...)
		return c.h.Handle(ctx, r)
	}
	h := c.root.WithAttrs(attrs)
	for _, op := range c.ops {
		h = op(h)
	}
	return h.Handle(ctx, r)
}

func (c contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	op := func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) }
	return contextHandler{root: c.root, h: op(c.h), ops: append(c.ops[:len(c.ops):len(c.ops)], op), grouped: c.grouped}
}

func (c contextHandler) WithGroup(name string) slog.Handler {
	op := func(h slog.Handler) slog.Handler { return h.WithGroup(name) }
	return contextHandler{root: c.root, h: op(c.h), ops: append(c.ops[:len(c.ops):len(c.ops)], op), grouped: true}
}
