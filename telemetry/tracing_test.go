package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/junction-go/junction/telemetry"
)

// TestLogsCarryTheTrace: a record logged with a context in a span carries
// its trace_id and span_id, and the order of WithOrderID, at the top level
// (trace.id and span.id in ECS).
func TestLogsCarryTheTrace(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "work")
	defer span.End()
	ctx = telemetry.WithOrderID(ctx, 42)
	sc := span.SpanContext()
	for _, c := range []struct {
		format, traceKey, spanKey string
	}{{telemetry.FormatJSON, "trace_id", "span_id"}, {telemetry.FormatECS, "trace.id", "span.id"}} {
		var b bytes.Buffer
		log := telemetry.NewLoggerFormat(&b, slog.LevelInfo, c.format, "order-service", "order-service-1")
		log.WithGroup("g").InfoContext(ctx, "placed", "x", 1)
		var rec map[string]any
		if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec[c.traceKey] != sc.TraceID().String() || rec[c.spanKey] != sc.SpanID().String() || rec["order_id"] != "42" {
			t.Errorf("%s record = %s, want %s=%s %s=%s order_id=42 at the top", c.format, b.String(), c.traceKey, sc.TraceID(), c.spanKey, sc.SpanID())
		}
	}
	var b bytes.Buffer
	telemetry.NewLogger(&b, slog.LevelInfo, "s", "s-1").InfoContext(context.Background(), "no trace")
	if strings.Contains(b.String(), "trace_id") {
		t.Errorf("a record without a span names a trace: %s", b.String())
	}
}

// TestACollectorThatHangsCostsNothing: while the collector does not
// answer, ending spans never waits; what does not fit the queue is dropped
// and counted, and what the collector then refuses is counted too.
func TestACollectorThatHangsCostsNothing(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		http.Error(w, "no", http.StatusBadRequest) // not retryable: the batch fails at once
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	m := telemetry.NewMetrics()
	var logged bytes.Buffer
	tr, err := telemetry.StartTracing(context.Background(), telemetry.TracingConfig{
		Service: "s", Instance: "s-1", Getenv: os.Getenv, Metrics: m, QueueSize: 10, Sampler: sdktrace.AlwaysSample(),
		Log: slog.New(slog.NewJSONHandler(&logged, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Exporting {
		t.Fatal("not exporting with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	tracer := otel.Tracer("test")
	for range 100 {
		_, span := tracer.Start(context.Background(), "work")
		span.End()
	}
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown(context.Background()) }()
	select {
	case <-arrived: // the flush reached the collector, which holds it
	case <-time.After(10 * time.Second):
		t.Fatal("no export reached the collector")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	full, failed := dropped(t, m, "queue_full"), dropped(t, m, "export_failed")
	if full != 90 || failed != 10 {
		t.Errorf("dropped: queue_full %v, export_failed %v; want 90 and 10 of 100 spans with a queue of 10", full, failed)
	}
	if n := strings.Count(logged.String(), "traces not exported"); n != 1 {
		t.Errorf("%d warnings about the export, want 1:\n%s", n, logged.String())
	}
}

func dropped(t *testing.T, m *telemetry.Metrics, reason string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "junction_trace_spans_dropped_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no junction_trace_spans_dropped_total{reason=%q}", reason)
	return 0
}

// TestRateLimitedSampler: new traces are kept up to the budget, the rest
// not; a kept trace's children are kept whatever the budget.
func TestRateLimitedSampler(t *testing.T) {
	s := sdktrace.ParentBased(telemetry.RateLimitedSampler(5))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
	tracer := tp.Tracer("test")
	start := time.Now()
	kept := 0
	var keptCtx context.Context
	for range 1000 {
		ctx, span := tracer.Start(context.Background(), "root")
		if span.SpanContext().IsSampled() {
			kept++
			keptCtx = ctx
		}
		span.End()
	}
	// The burst (5) and what refilled while the loop ran.
	if most := 5 + int(time.Since(start).Seconds()*5) + 1; kept < 5 || kept > most {
		t.Errorf("kept %d of 1000 new traces, want 5 to %d", kept, most)
	}
	for range 100 {
		_, child := tracer.Start(keptCtx, "child")
		if !child.SpanContext().IsSampled() {
			t.Fatal("a kept trace's child was not kept")
		}
		child.End()
	}
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(telemetry.RateLimitedSampler(0))))
	if _, span := never.Tracer("t").Start(context.Background(), "x"); span.SpanContext().IsSampled() {
		t.Error("a budget of 0 kept a new trace")
	}
}
