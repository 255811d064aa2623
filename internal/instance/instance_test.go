package instance_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
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

// TestProbePort: the probe port answers /healthz and /readyz as the HTTP
// port does, and nothing of the service's own API.
func TestProbePort(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probeAddr := free.Addr().String()
	free.Close()
	var broken atomic.Bool
	reg := &registrar{registered: make(chan discovery.Instance, 1), leaving: make(chan struct{}), release: make(chan struct{})}
	close(reg.release)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- instance.Run(ctx, instance.Config{Service: "test-service", ID: "test-1", Registrar: reg, HTTPAddr: "127.0.0.1:0", ProbeAddr: probeAddr},
			slog.New(slog.DiscardHandler), instance.Parts{
				HTTP: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("the API\n")) }),
				Ready: func(context.Context) error {
					if broken.Load() {
						return errors.New("database unreachable")
					}
					return nil
				},
			})
	}()
	inst := <-reg.registered
	if _, listed := inst.Endpoints["probe"]; listed || len(inst.Endpoints) != 1 {
		t.Errorf("registered endpoints = %v, want the HTTP port only", inst.Endpoints)
	}
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get("http://" + probeAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/api/orders": 404, "/": 404, "/metrics": 404} {
		if got := get(path); got != want {
			t.Errorf("probe port GET %s = %d, want %d", path, got, want)
		}
	}
	broken.Store(true)
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("probe port GET /readyz with the database unreachable = %d, want 503", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after a stop", err)
	}
}
