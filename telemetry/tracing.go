package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// TracingConfig says who a process is and where its spans go.
type TracingConfig struct {
	// Service is the registry name (service.name); Instance the instance
	// id (service.instance.id).
	Service, Instance, Version string
	// Getenv reads the OpenTelemetry variables (os.Getenv in production).
	Getenv func(string) string
	// Metrics, when set, count the spans exported and dropped.
	Metrics *Metrics
	Log     *slog.Logger
	// QueueSize bounds the spans waiting for export; past it new ones are
	// dropped (and counted), never waited for. 8192 when zero.
	QueueSize int
	// Sampler is used when OTEL_TRACES_SAMPLER does not name one; nil
	// means ParentBased(RateLimitedSampler(DefaultTracesPerSecond)).
	Sampler sdktrace.Sampler
}

// DefaultTracesPerSecond is how many new traces a process keeps each
// second by default: every one at a person's pace, a bounded share under
// load.
const DefaultTracesPerSecond = 20

// RateLimitedSampler keeps at most perSecond new traces each second (a
// token bucket with a second's worth of burst) and samples none of the
// rest, whatever their ids: at a person's pace every trace is whole; under
// load the cost of tracing stays bounded (a ratio would cost the same
// share at any rate, and miss most of one person's orders). Wrap it in
// ParentBased, so only roots decide and every hop of a kept trace is kept.
func RateLimitedSampler(perSecond float64) sdktrace.Sampler {
	if perSecond <= 0 {
		return sdktrace.NeverSample()
	}
	return &rateLimited{lim: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond))), perSecond: perSecond}
}

type rateLimited struct {
	lim       *rate.Limiter
	perSecond float64
}

func (r *rateLimited) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	d := sdktrace.Drop
	if r.lim.Allow() {
		d = sdktrace.RecordAndSample
	}
	return sdktrace.SamplingResult{Decision: d, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
}

func (r *rateLimited) Description() string {
	return fmt.Sprintf("RateLimited{%g/s}", r.perSecond)
}

// Tracing is a process's tracer provider.
type Tracing struct {
	// Exporting reports whether spans leave the process (an OTLP
	// endpoint is configured); without, spans only give log lines and
	// messages their trace ids.
	Exporting bool
	tp        *sdktrace.TracerProvider
}

// Shutdown flushes the spans still queued (bounded by ctx) and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// StartTracing installs the process's global tracer provider and the W3C
// propagators (traceparent, baggage), configured by the standard variables:
//
//   - OTEL_SDK_DISABLED=true: no spans at all (trace ids still pass through);
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: where
//     to export; without either, nothing is exported and nothing is
//     sampled: log lines still carry trace ids, and a caller's sampled
//     trace is continued but not recorded here;
//   - OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL): http/protobuf (the
//     default) or grpc; the exporters read their other OTEL_EXPORTER_OTLP_*
//     variables themselves (headers, timeout, insecure, compression);
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: the sampler; unset,
//     it is TracingConfig.Sampler (by default parent-based, with
//     RateLimitedSampler(DefaultTracesPerSecond) deciding for roots);
//   - OTEL_TRACES_EXPORTER=none: no export;
//   - OTEL_RESOURCE_ATTRIBUTES: more resource attributes (service.name is
//     always the registry name).
//
// Spans go out in batches from a bounded queue: a collector that is slow
// or down never slows a request; what does not fit is dropped and counted
// (junction_trace_spans_dropped_total).
func StartTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	getenv := cfg.Getenv
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return &Tracing{}, nil
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(
			semconv.ServiceName(cfg.Service),
			semconv.ServiceInstanceID(cfg.Instance),
			semconv.ServiceVersion(cfg.Version),
		))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporting := false
	endpoint := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint != "" && !strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		exp, err := newExporter(ctx, cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL")))
		if err != nil {
			return nil, err
		}
		queue := cfg.QueueSize
		if queue <= 0 {
			queue = 8192
		}
		counted := newCountingExporter(exp, cfg.Metrics)
		bsp := sdktrace.NewBatchSpanProcessor(counted,
			// The queue below never drops: boundedProcessor admits at most
			// queue spans not yet exported, so it is the one to count.
			sdktrace.WithMaxQueueSize(queue+512),
			sdktrace.WithMaxExportBatchSize(512),
			sdktrace.WithBatchTimeout(500*time.Millisecond),
			sdktrace.WithExportTimeout(5*time.Second))
		opts = append(opts, sdktrace.WithSpanProcessor(&boundedProcessor{SpanProcessor: bsp, limit: int64(queue), exp: counted}))
		exporting = true
		if getenv("OTEL_TRACES_SAMPLER") == "" {
			sampler := cfg.Sampler
			if sampler == nil {
				sampler = sdktrace.ParentBased(RateLimitedSampler(DefaultTracesPerSecond))
			}
			opts = append(opts, sdktrace.WithSampler(sampler))
		}
	} else {
		// Nowhere to send them: keep the ids, record nothing.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	if cfg.Log != nil {
		otel.SetErrorHandler(&quietErrors{log: cfg.Log, every: time.Minute})
	}
	return &Tracing{Exporting: exporting, tp: tp}, nil
}

func newExporter(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	switch protocol {
	case "", "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		return exp, nil
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported; use http/protobuf or grpc", protocol)
	}
}

// countingExporter counts what its exporter sent and what it failed to
// send (those spans are lost: the batch processor does not retry).
type countingExporter struct {
	sdktrace.SpanExporter
	pending          atomic.Int64 // spans handed on, not yet exported or failed
	exported, failed prometheus.Counter
	queueFull        prometheus.Counter
}

func newCountingExporter(exp sdktrace.SpanExporter, m *Metrics) *countingExporter {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "junction_trace_spans_dropped_total",
		Help: "Spans this process dropped instead of exporting, by reason: queue_full (the export queue was full: the collector is slow or down), export_failed (the collector refused them or did not answer).",
	}, []string{"reason"})
	c := &countingExporter{
		SpanExporter: exp,
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_trace_spans_exported_total",
			Help: "Spans this process exported to its OTLP collector.",
		}),
		failed:    dropped.WithLabelValues("export_failed"),
		queueFull: dropped.WithLabelValues("queue_full"),
	}
	if m != nil {
		m.Registerer().MustRegister(c.exported, dropped)
	}
	return c
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	c.pending.Add(-int64(len(spans)))
	if err != nil {
		c.failed.Add(float64(len(spans)))
		return err
	}
	c.exported.Add(float64(len(spans)))
	return nil
}

// boundedProcessor hands at most limit unexported spans to the batch
// processor and drops (and counts) the rest, so the count of dropped spans
// is exact.
type boundedProcessor struct {
	sdktrace.SpanProcessor
	limit int64
	exp   *countingExporter
}

func (b *boundedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if b.exp.pending.Add(1) > b.limit {
		b.exp.pending.Add(-1)
		b.exp.queueFull.Inc()
		return
	}
	b.SpanProcessor.OnEnd(s)
}

// quietErrors logs OpenTelemetry's own errors (an export that failed) at
// most once per period, with how many there were, instead of one line per
// batch while a collector is away.
type quietErrors struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	last   time.Time
	missed int
}

func (q *quietErrors) Handle(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.last) < q.every {
		q.missed++
		return
	}
	attrs := []any{"err", err}
	if q.missed > 0 {
		attrs = append(attrs, "similar_errors_since_last", q.missed)
	}
	var dl interface{ Timeout() bool }
	if errors.As(err, &dl) && dl.Timeout() {
		attrs = append(attrs, "hint", "is the collector at OTEL_EXPORTER_OTLP_ENDPOINT up?")
	}
	q.log.Warn("traces not exported (spans are dropped and counted in junction_trace_spans_dropped_total)", attrs...)
	q.last, q.missed = time.Now(), 0
}
