package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

var grpcBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// grpcMetrics are the calls of one side (server or client), by full
// method ("/user.v1.UserService/GetUser") and status code.
type grpcMetrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newGRPCMetrics(m *Metrics, side string) *grpcMetrics {
	g := &grpcMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_" + side + "_handled_total",
			Help: "gRPC calls " + map[string]string{"server": "served", "client": "made"}[side] + ", by full method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_" + side + "_handling_seconds",
			Help:    "Time from the start of a gRPC call to its status, by full method (" + side + " side).",
			Buckets: grpcBuckets,
		}, []string{"method"}),
	}
	m.Registerer().MustRegister(g.handled, g.duration)
	return g
}

func (g *grpcMetrics) observe(method string, start time.Time, err error) {
	g.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	g.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// notHealth leaves the health service's calls (probes, every second) out
// of traces.
var notHealth = otelgrpc.WithFilter(filters.Not(filters.HealthCheck()))

// GRPCServerOptions instrument a gRPC server: a server span per call
// (continuing the caller's traceparent) and, with m set, the call metrics
// grpc_server_handled_total and grpc_server_handling_seconds.
func GRPCServerOptions(m *Metrics) []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(notHealth, otelgrpc.WithMeterProvider(noop.NewMeterProvider())))}
	if m != nil {
		g := newGRPCMetrics(m, "server")
		opts = append(opts, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			g.observe(info.FullMethod, start, err)
			return resp, err
		}))
	}
	return opts
}

// GRPCDialOptions instrument a gRPC client likewise: a client span per call
// with the traceparent sent along and, with m set, grpc_client_handled_total
// and grpc_client_handling_seconds. Several clients of one process share
// the metrics: call it once per process and reuse the options.
func GRPCDialOptions(m *Metrics) []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(notHealth, otelgrpc.WithMeterProvider(noop.NewMeterProvider())))}
	if m != nil {
		g := newGRPCMetrics(m, "client")
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
			start := time.Now()
			err := invoker(ctx, method, req, reply, cc, callOpts...)
			g.observe(method, start, err)
			return err
		}))
	}
	return opts
}
