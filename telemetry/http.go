package telemetry

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The HTTP spans follow OpenTelemetry's HTTP conventions, as otelhttp's
// do, but cost next to nothing for a request whose trace is not sampled:
// otelhttp computes every attribute and metric option and wraps the body
// and the response writer of every request before it knows whether the
// span records, and that was a tenth of each service's CPU (and a sixth
// of the gateway's) at the default sampling. Here a span that does not
// record gets nothing but its context, which still goes downstream in the
// W3C traceparent, so the trace id is kept end to end.
const httpScope = "github.com/junction-go/junction/telemetry/http"

// untraced are the paths of an instance that get no span: probes and
// scrapes, which run every second and are about no one's request, and the
// gateway's WebSocket, one request that lasts for hours.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/ws": true}

// ServerHandler instruments an instance's HTTP server: a server span for
// every request (W3C traceparent continued; at a public endpoint, the
// gateway, a new trace linked to the caller's instead, so outsiders cannot
// join or sample our traces), named by its route pattern; and, with m set,
// the request metrics of HTTPMetrics. Probes and /metrics get no span.
func ServerHandler(next http.Handler, m *Metrics, public bool) http.Handler {
	inner := routed(next, func(r *http.Request, route string, status int, refused bool, took time.Duration) {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetName(r.Method + " " + route)
			span.SetAttributes(semconv.HTTPRoute(route), semconv.HTTPResponseStatusCode(status))
			if status >= 500 { // a server's span fails on its 5xx only
				span.SetStatus(codes.Error, "")
			}
		}
		if m != nil {
			m.observe(r.Method, route, status, refused, took)
		}
	})
	tracer := otel.GetTracerProvider().Tracer(httpScope)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced[r.URL.Path] {
			inner.ServeHTTP(w, r)
			return
		}
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
		if public {
			opts = append(opts, trace.WithNewRoot())
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsRemote() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			}
		}
		ctx, span := tracer.Start(ctx, r.Method, opts...)
		defer span.End()
		if span.IsRecording() {
			span.SetAttributes(serverAttrs(r)...)
		}
		inner.ServeHTTP(w, r.WithContext(ctx))
	})
}

func serverAttrs(r *http.Request) []attribute.KeyValue {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		method(r.Method),
		semconv.URLScheme(scheme),
		semconv.URLPath(r.URL.Path),
		semconv.NetworkProtocolVersion(strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)),
	}
	attrs = append(attrs, hostPort(r.Host, semconv.ServerAddress, semconv.ServerPort)...)
	if peer := hostPort(r.RemoteAddr, semconv.NetworkPeerAddress, semconv.NetworkPeerPort); len(peer) > 0 {
		// No proxy in front is trusted, so the client is the peer.
		attrs = append(append(attrs, peer...), semconv.ClientAddress(peer[0].Value.AsString()))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	return attrs
}

// method is the http.request.method attribute: a known method as itself,
// anything else as _OTHER, so a client cannot make up values.
func method(m string) attribute.KeyValue {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return semconv.HTTPRequestMethodKey.String(m)
	}
	return semconv.HTTPRequestMethodOther
}

func hostPort(hp string, host func(string) attribute.KeyValue, port func(int) attribute.KeyValue) []attribute.KeyValue {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		if hp == "" {
			return nil
		}
		return []attribute.KeyValue{host(hp)}
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return []attribute.KeyValue{host(h)}
	}
	return []attribute.KeyValue{host(h), port(n)}
}

// ClientTransport traces the calls made through base (nil: the default
// transport) with client spans, named "<method> <host>", and sends the
// W3C traceparent with each. A recording span lasts until the answer's
// body is read or closed.
func ClientTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return clientTransport{base: base, tracer: otel.GetTracerProvider().Tracer(httpScope)}
}

type clientTransport struct {
	base   http.RoundTripper
	tracer trace.Tracer
}

func (t clientTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(r.Context(), r.Method+" "+r.URL.Host, trace.WithSpanKind(trace.SpanKindClient))
	r = r.Clone(ctx) // a RoundTripper leaves its request as it was given
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(r.Header))
	if !span.IsRecording() {
		span.End()
		return t.base.RoundTrip(r)
	}
	attrs := []attribute.KeyValue{method(r.Method), semconv.URLFull(redacted(r))}
	attrs = append(attrs, hostPort(r.URL.Host, semconv.ServerAddress, semconv.ServerPort)...)
	span.SetAttributes(attrs...)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 { // a client's span fails on 4xx and 5xx
		span.SetStatus(codes.Error, "")
	}
	if resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		// (An upgraded connection's body is the connection itself, which
		// its reader needs to write to as well: it is left as it is.)
		span.End()
		return resp, nil
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// redacted is r's URL without user info (url.full must not carry
// credentials).
func redacted(r *http.Request) string {
	if r.URL.User == nil {
		return r.URL.String()
	}
	u := *r.URL
	u.User = nil
	return u.String()
}

// spanBody ends its span when the body is read to its end or closed.
type spanBody struct {
	io.ReadCloser
	span  trace.Span
	ended bool
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.ended {
		if err != io.EOF {
			b.span.RecordError(err)
			b.span.SetStatus(codes.Error, err.Error())
		}
		b.ended = true
		b.span.End()
	}
	return n, err
}

func (b *spanBody) Close() error {
	if !b.ended {
		b.ended = true
		b.span.End()
	}
	return b.ReadCloser.Close()
}
