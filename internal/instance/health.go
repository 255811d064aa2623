package instance

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// health is the standard gRPC health service (grpc.health.v1.Health) of an
// instance, answered from the same readiness as GET /readyz: NOT_SERVING
// while the instance drains and whenever Ready fails (its database or
// broker unreachable), SERVING otherwise. The empty service name and every
// service the gRPC server offers are known; any other is NOT_FOUND.
type health struct {
	healthpb.UnimplementedHealthServer
	services map[string]bool
	ready    func(context.Context) error // the instance's readiness, as GET /readyz answers it
	// poll is how often Watch asks again.
	poll time.Duration
}

func newHealth(s *grpc.Server, ready func(context.Context) error) *health {
	h := &health{services: map[string]bool{"": true}, ready: ready, poll: time.Second}
	for name := range s.GetServiceInfo() {
		h.services[name] = true
	}
	return h
}

// status is the instance's state now.
func (h *health) status(ctx context.Context) healthpb.HealthCheckResponse_ServingStatus {
	if h.ready(ctx) != nil {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return healthpb.HealthCheckResponse_SERVING
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !h.services[req.GetService()] {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: h.status(ctx)}, nil
}

func (h *health) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	st := h.status(ctx)
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for name := range h.services {
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch sends the status at once and then on every change, until the
// caller goes away or the server stops.
func (h *health) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	known := h.services[req.GetService()]
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		if known {
			st = h.status(stream.Context())
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-t.C:
		}
	}
}
