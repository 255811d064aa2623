package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/junction-go/junction/telemetry"
)

// recordSpans installs a tracer provider that keeps every span (or, with
// sampler, what it samples) and the W3C propagator, for the test's
// length.
func recordSpans(t *testing.T, sampler sdktrace.Sampler) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	return rec
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestHTTPSpans: a call through ClientTransport to a ServerHandler is one
// trace, client span parent of the server span, both with the HTTP
// conventions' attributes, the server span named by its route; a 5xx
// fails both spans, a 404 only the client's; probes get no span.
func TestHTTPSpans(t *testing.T) {
	rec := recordSpans(t, sdktrace.AlwaysSample())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/things/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "thing") })
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(telemetry.ServerHandler(mux, nil, false))
	defer srv.Close()
	client := &http.Client{Transport: telemetry.ClientTransport(nil)}

	ctx, parent := otel.Tracer("test").Start(context.Background(), "work")
	for _, path := range []string{"/api/things/7", "/broken", "/missing", "/healthz"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	parent.End()

	// The server ends its span before the client has read the answer's
	// end, so both are in the recorder once the loop is done.
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	host := srv.Listener.Addr().String()
	if n := len(byName["GET "+host]); n != 4 {
		t.Fatalf("%d client spans named %q, want 4 (spans: %v)", n, "GET "+host, keys(byName))
	}
	server := byName["GET /api/things/{id}"]
	if len(server) != 1 {
		t.Fatalf("server spans of the route: %d, want 1 (spans: %v)", len(server), keys(byName))
	}
	s := server[0]
	client0 := byName["GET "+host][0]
	if s.Parent().SpanID() != client0.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("server span's parent %s (trace %s), want the client span %s (trace %s)", s.Parent().SpanID(), s.SpanContext().TraceID(), client0.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
	if client0.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span's parent %s, want %s", client0.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if s.SpanKind() != trace.SpanKindServer || client0.SpanKind() != trace.SpanKindClient {
		t.Errorf("kinds: server %v, client %v", s.SpanKind(), client0.SpanKind())
	}
	a := attrsOf(s)
	for k, want := range map[attribute.Key]string{"http.request.method": "GET", "url.path": "/api/things/7", "http.route": "/api/things/{id}", "url.scheme": "http", "server.address": "127.0.0.1", "client.address": "127.0.0.1"} {
		if a[k].AsString() != want {
			t.Errorf("server span %s = %q, want %q", k, a[k].AsString(), want)
		}
	}
	if a["http.response.status_code"].AsInt64() != 200 {
		t.Errorf("server span's status code %v", a["http.response.status_code"])
	}
	ca := attrsOf(client0)
	if ca["url.full"].AsString() != srv.URL+"/api/things/7" || ca["http.response.status_code"].AsInt64() != 200 {
		t.Errorf("client span: url.full %q, status %v", ca["url.full"].AsString(), ca["http.response.status_code"])
	}

	if b := byName["GET /broken"]; len(b) != 1 || b[0].Status().Code != codes.Error {
		t.Errorf("a 503's server span: %v", b)
	}
	if m := byName["GET unmatched"]; len(m) != 1 || m[0].Status().Code == codes.Error {
		t.Errorf("a 404's server span (not the server's failure): %v", m)
	}
	failedClients := 0
	for _, c := range byName["GET "+host] {
		if c.Status().Code == codes.Error {
			failedClients++
		}
	}
	if failedClients != 2 {
		t.Errorf("%d client spans failed, want 2 (the 503 and the 404)", failedClients)
	}
	if len(byName["GET /healthz"])+len(byName["GET"]) != 0 {
		t.Errorf("a probe got a span")
	}
}

// TestHTTPSpansUnsampled: a trace that is not sampled records nothing, yet
// its trace id still reaches the server, so whatever the server starts
// below it stays in the same (unsampled) trace.
func TestHTTPSpansUnsampled(t *testing.T) {
	rec := recordSpans(t, sdktrace.ParentBased(sdktrace.NeverSample()))
	var seen trace.SpanContext
	srv := httptest.NewServer(telemetry.ServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
	}), nil, false))
	defer srv.Close()
	ctx, parent := otel.Tracer("test").Start(context.Background(), "work")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
	resp, err := (&http.Client{Transport: telemetry.ClientTransport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	if !parent.SpanContext().IsValid() || seen.TraceID() != parent.SpanContext().TraceID() || seen.IsSampled() {
		t.Errorf("server saw %v, want trace %s unsampled", seen, parent.SpanContext().TraceID())
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded of an unsampled trace", n)
	}
}

// TestHTTPSpansPublic: at a public endpoint a caller's traceparent starts
// no child: the server span is a new root, linked to it.
func TestHTTPSpansPublic(t *testing.T) {
	rec := recordSpans(t, sdktrace.AlwaysSample())
	srv := httptest.NewServer(telemetry.ServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil, true))
	defer srv.Close()
	outsider := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/x", nil)
	req.Header.Set("traceparent", outsider)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Parent().IsValid() || s.SpanContext().TraceID().String() == "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("the public server span continued the caller's trace: parent %v", s.Parent())
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("links = %v, want the caller's span", l)
	}
}

func keys(m map[string][]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
