package tracestore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/junction-go/junction/telemetry/tracestore"
)

// exporterTo returns a tracer provider of service whose spans go, through
// the real OTLP/HTTP exporter, to url.
func exporterTo(t *testing.T, url, service string, gzip bool) *sdktrace.TracerProvider {
	t.Helper()
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(url + "/v1/traces")}
	if gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
}

// TestExportedTracesAreServed: spans two services export over OTLP/HTTP
// (one of them gzipped) make one trace, found by its id and by its order.
func TestExportedTracesAreServed(t *testing.T) {
	store := tracestore.New(tracestore.Config{})
	srv := httptest.NewServer(tracestore.NewServer(store, "", slog.New(slog.DiscardHandler)).Handler())
	defer srv.Close()
	gw, orders := exporterTo(t, srv.URL, "gateway", false), exporterTo(t, srv.URL, "order-service", true)

	ctx, root := gw.Tracer("t").Start(context.Background(), "POST /api/orders", trace.WithSpanKind(trace.SpanKindServer))
	_, child := orders.Tracer("t").Start(ctx, "POST /api/orders", trace.WithAttributes(attribute.Int64("order.id", 7)))
	child.End()
	root.End()
	id := root.SpanContext().TraceID().String()

	var tr tracestore.Trace
	if code := get(t, srv.URL+"/v1/traces/"+id, &tr); code != http.StatusOK {
		t.Fatalf("GET trace = %d", code)
	}
	if len(tr.Spans) != 2 {
		t.Fatalf("%d spans, want 2", len(tr.Spans))
	}
	if tr.Root != "POST /api/orders" || tr.RootService != "gateway" || tr.Orphans != 0 ||
		fmt.Sprint(tr.Services) != "[gateway order-service]" || fmt.Sprint(tr.OrderIDs) != "[7]" {
		t.Errorf("trace = %+v", tr.Summary)
	}
	if tr.Spans[1].ParentSpanID != tr.Spans[0].SpanID || tr.Spans[0].Kind != "server" || tr.Spans[1].Attributes["order.id"] != float64(7) {
		t.Errorf("spans = %+v", tr.Spans)
	}
	var byOrder struct {
		Traces []tracestore.Summary `json:"traces"`
	}
	if get(t, srv.URL+"/v1/orders/7/traces", &byOrder); len(byOrder.Traces) != 1 || byOrder.Traces[0].TraceID != id {
		t.Errorf("order 7's traces = %+v", byOrder.Traces)
	}
	if get(t, srv.URL+"/v1/orders/8/traces", &byOrder); len(byOrder.Traces) != 0 {
		t.Errorf("order 8's traces = %+v", byOrder.Traces)
	}
	// One call, from the gateway to order-service.
	var graph struct {
		Edges []tracestore.Edge `json:"edges"`
	}
	if code := get(t, srv.URL+"/v1/graph?window=1m", &graph); code != http.StatusOK || len(graph.Edges) != 1 ||
		graph.Edges[0].From != "gateway" || graph.Edges[0].To != "order-service" || graph.Edges[0].Calls != 1 || graph.Edges[0].Errors != 0 {
		t.Errorf("graph = %d %+v, want one call from gateway to order-service", code, graph.Edges)
	}
	if code := get(t, srv.URL+"/v1/graph?window=forever", &graph); code != http.StatusBadRequest {
		t.Errorf("graph?window=forever = %d, want 400", code)
	}
}

// TestForward: with a collector to forward to, it gets what the store got.
func TestForward(t *testing.T) {
	got := make(chan []byte, 1)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			got <- b
		}
	}))
	defer collector.Close()
	s := tracestore.NewServer(tracestore.New(tracestore.Config{}), collector.URL, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	_, span := exporterTo(t, srv.URL, "gateway", true).Tracer("t").Start(context.Background(), "x")
	span.End()
	select {
	case b := <-got:
		if len(b) == 0 {
			t.Error("the collector got an empty export")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing forwarded to the collector within 10s")
	}
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func spans(service string, trace byte, n int) []*tracepb.ResourceSpans {
	var ss []*tracepb.Span
	for i := range n {
		ss = append(ss, &tracepb.Span{TraceId: []byte{trace, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, SpanId: []byte{byte(i + 1), 0, 0, 0, 0, 0, 0, 1}, Name: "s",
			Attributes: []*commonpb.KeyValue{{Key: "order.id", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(trace)}}}}})
	}
	return []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: ss}},
	}}
}

// TestBounded: past MaxSpans the oldest traces go, with their order index;
// past MaxSpansPerTrace a trace's spans are dropped and counted.
func TestBounded(t *testing.T) {
	s := tracestore.New(tracestore.Config{MaxSpans: 10, MaxSpansPerTrace: 6})
	for tr := byte(1); tr <= 4; tr++ {
		s.Add(spans("svc", tr, 4))
	}
	if st := s.Stats(); st.Traces != 2 || st.Spans != 8 {
		t.Errorf("stats = %+v, want the latest 2 traces of 4 spans", st)
	}
	if len(s.Order(1)) != 0 || len(s.Order(2)) != 0 || len(s.Order(4)) != 1 {
		t.Errorf("orders 1, 2 (evicted) and 4: %v %v %v", s.Order(1), s.Order(2), s.Order(4))
	}
	if r := s.Recent(10); len(r) != 2 || r[0].OrderIDs[0] != 4 {
		t.Errorf("recent = %+v, want traces 4 then 3", r)
	}
	s.Add(spans("svc", 9, 8))
	if st := s.Stats(); st.Dropped != 2 {
		t.Errorf("dropped = %d, want the 2 spans past 6 of one trace", st.Dropped)
	}
}
