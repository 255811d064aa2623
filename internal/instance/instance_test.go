package instance_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/internal/instance"
)

// registrar records the registered instance and, at stop, holds the
// deregistration until release is closed, so the test can look at a
// draining instance.
type registrar struct {
	registered chan discovery.Instance
	leaving    chan struct{}
	release    chan struct{}
}

func (r *registrar) KeepAlive(ctx context.Context, inst discovery.Instance, _ time.Duration, _ func(error)) {
	r.registered <- inst
	<-ctx.Done()
	close(r.leaving)
	<-r.release
}

// TestGRPCHealthFollowsReadiness asks the standard health service what
// grpc-health-probe asks (Check, service "") next to GET /readyz: both say
// ready while Ready passes, both not ready while it fails (a database or
// broker unreachable), and both not ready while the instance drains.
func TestGRPCHealthFollowsReadiness(t *testing.T) {
	var broken atomic.Bool
	reg := &registrar{registered: make(chan discovery.Instance, 1), leaving: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- instance.Run(ctx, instance.Config{Service: "test-service", ID: "test-1", Registrar: reg, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"},
			slog.New(slog.DiscardHandler), instance.Parts{
				HTTP: http.NotFoundHandler(),
				GRPC: grpc.NewServer(),
				Ready: func(context.Context) error {
					if broken.Load() {
						return errors.New("database unreachable")
					}
					return nil
				},
			})
	}()
	inst := <-reg.registered
	conn, err := grpc.NewClient(inst.Endpoints[discovery.EndpointGRPC], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	probe := func() (healthpb.HealthCheckResponse_ServingStatus, int) {
		t.Helper()
		h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("health check: %v", err)
		}
		resp, err := http.Get("http://" + inst.Endpoints[discovery.EndpointHTTP] + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz: %v", err)
		}
		resp.Body.Close()
		return h.GetStatus(), resp.StatusCode
	}
	check := func(when string, wantHealth healthpb.HealthCheckResponse_ServingStatus, wantReady int) {
		t.Helper()
		if h, r := probe(); h != wantHealth || r != wantReady {
			t.Errorf("%s: health %v, /readyz %d; want %v and %d", when, h, r, wantHealth, wantReady)
		}
	}
	check("ready", healthpb.HealthCheckResponse_SERVING, http.StatusOK)
	broken.Store(true)
	check("its database unreachable", healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable)
	broken.Store(false)
	check("back", healthpb.HealthCheckResponse_SERVING, http.StatusOK)

	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); err == nil {
		t.Error("health of an unknown service answered; want NOT_FOUND")
	}
	cancel()
	<-reg.leaving // draining: still serving, leaving the registry
	check("draining", healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable)
	close(reg.release)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after a stop", err)
	}
}
