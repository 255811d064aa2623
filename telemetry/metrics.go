package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's Prometheus registry: the Go runtime's and the
// process's own figures, and what the parts of the process register.
// Labels never hold ids (an order, a message, a user): only route
// patterns, topics, groups, dependencies and outcomes, so every series is
// bounded. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refusals *prometheus.HistogramVec
}

// NewMetrics returns a registry with the Go and process collectors and the
// HTTP server's request metrics.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_server_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		refusals: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_refusal_duration_seconds",
			Help:    "Time to refuse an HTTP request for load (429 or 503 with Retry-After), by route pattern and method: under overload most answers are refusals, and each must come at once; http_server_request_duration_seconds has them mixed with the work.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .0075, .01, .015, .02, .03, .05, .1, .25, 1},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration, m.refusals)
	return m
}

// Registerer is where the process's parts add their metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer reads them, for tests and for the handler.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition format (GET
// /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

type routeKey struct{}

// routeHolder receives the pattern of the route that served a request,
// from the innermost router (SetRoute), through every copy of the request
// a middleware makes on the way.
type routeHolder struct{ pattern string }

// SetRoute records the route pattern that serves the request of ctx, for
// the HTTP metrics (a no-op outside HTTPMetrics).
func SetRoute(ctx context.Context, pattern string) {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		h.pattern = pattern
	}
}

// HTTPMetrics counts and times every request by the pattern of the route
// that served it ("GET /api/orders/{id}"; the innermost router's, see
// SetRoute), never by its path, so ids do not become labels. A request no
// route took is counted under "unmatched".
func (m *Metrics) HTTPMetrics(next http.Handler) http.Handler {
	return routed(next, func(r *http.Request, route string, status int, refused bool, took time.Duration) {
		m.observe(r.Method, route, status, refused, took)
	})
}

func (m *Metrics) observe(method, route string, status int, refused bool, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
	if refused {
		m.refusals.WithLabelValues(route, method).Observe(took.Seconds())
	}
}

// Refusal tells whether an answer with status and header refuses its
// request for load: 429 or 503 with Retry-After, "come back later".
func Refusal(status int, header http.Header) bool {
	return (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && header.Get("Retry-After") != ""
}

// routed serves next and tells done the route pattern that served each
// request (without its method), its status, whether it was a Refusal and
// how long it took.
func routed(next http.Handler, done func(r *http.Request, route string, status int, refused bool, took time.Duration)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		holder := &routeHolder{}
		r = r.WithContext(context.WithValue(r.Context(), routeKey{}, holder))
		sw := NewResponseRecorder(w)
		start := time.Now()
		next.ServeHTTP(sw, r)
		route := holder.pattern
		if route == "" {
			route = r.Pattern
		}
		if route == "" {
			route = "unmatched"
		}
		// A pattern names its method ("GET /x") or matches any ("/x/"):
		// the method is a label of its own.
		if method, path, ok := strings.Cut(route, " "); ok && method == strings.ToUpper(method) {
			route = path
		}
		done(r, route, sw.Status(), Refusal(sw.Status(), sw.Header()), time.Since(start))
	})
}

// ResponseRecorder passes a response through and remembers its status
// and size, for access logs and metrics.
type ResponseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

// NewResponseRecorder wraps w; a handler that writes no header answers 200.
func NewResponseRecorder(w http.ResponseWriter) *ResponseRecorder {
	return &ResponseRecorder{ResponseWriter: w, status: http.StatusOK}
}

// Status is the status written.
func (s *ResponseRecorder) Status() int { return s.status }

// Bytes is the size of the body written.
func (s *ResponseRecorder) Bytes() int { return s.bytes }

func (s *ResponseRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *ResponseRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush
// for server-sent events, hijack for WebSockets, deadlines).
func (s *ResponseRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
