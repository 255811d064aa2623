// Package telemetry holds what every Junction process reports about itself:
// JSON logs that name the service and carry the request id of the work they
// describe.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"
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

// NewLogger returns a JSON logger writing to w whose every record names the
// service and instance, and carries the request id of the context it is
// logged with (use the …Context methods), at the top level of the record
// even when the logger has groups.
func NewLogger(w io.Writer, level slog.Level, service, instance string) *slog.Logger {
	return NewLoggerFormat(w, level, FormatJSON, service, instance)
}

// Log formats.
const (
	// FormatJSON is slog's JSON: time, level, msg and the attributes.
	FormatJSON = "json"
	// FormatECS names the fields as Elastic Common Schema does, for an
	// ELK pipeline: @timestamp, log.level, message, service.name,
	// service.node.name, http.request.id, error.message, ecs.version.
	FormatECS = "ecs"
)

// ecsNames are the ECS names of Junction's own top-level fields.
var ecsNames = map[string]string{
	slog.TimeKey: "@timestamp", slog.LevelKey: "log.level", slog.MessageKey: "message",
	"service": "service.name", "instance": "service.node.name", "request_id": "http.request.id", "err": "error.message",
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

func (c contextHandler) Handle(ctx context.Context, r slog.Record) error {
	id := RequestID(ctx)
	if id == "" {
		return c.h.Handle(ctx, r)
	}
	if !c.grouped {
		r.AddAttrs(slog.String("request_id", id))
		return c.h.Handle(ctx, r)
	}
	h := c.root.WithAttrs([]slog.Attr{slog.String("request_id", id)})
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
