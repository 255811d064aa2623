// Package instance runs one instance of a Junction service: its HTTP and gRPC
// listeners, its liveness and readiness probes, its registration in the
// registry, and a graceful stop in the right order (leave the registry, stop
// taking new work, finish the work in flight).
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry"
)

// Config says where an instance listens and how it registers.
type Config struct {
	Service string
	// ID is the instance's registry id; stable across restarts of the same
	// instance so a restart replaces the old entry.
	ID string
	// Registrar keeps the instance registered (the registry's client, or
	// etcd's); nil means do not register (DNS: the platform does).
	Registrar discovery.Registrar
	// HTTPAddr and GRPCAddr are listen addresses ("127.0.0.1:0" picks a free
	// port). HTTPListener, when set, is used instead of HTTPAddr.
	HTTPAddr     string
	GRPCAddr     string
	HTTPListener net.Listener
	// AdvertiseHost replaces the listen host in registered addresses, for
	// instances that listen on all interfaces.
	AdvertiseHost string
	// AdvertiseHTTP, when set, is the HTTP address registered instead of
	// the listener's (a port mapped elsewhere, a proxy in front).
	AdvertiseHTTP string
	TTL           time.Duration
	// Grace bounds how long in-flight work may take to finish at stop.
	Grace   time.Duration
	Version string
	// Endpoints are extra endpoints to register (a broker's client port).
	Endpoints map[string]string
	// Metrics, when set, are served at GET /metrics on the HTTP port
	// (never routed by the gateway), and count every HTTP request.
	Metrics *telemetry.Metrics
	// Public marks an instance that outsiders call (the gateway): its
	// requests start new traces instead of joining a caller's.
	Public bool
	// Identity, when set, makes the HTTP port mTLS: a connection without
	// a certificate of the trust domain is refused, and Policy decides
	// which identity may call which route (every route, /readyz and
	// /metrics too). The gRPC server is the service's to build with
	// Policy.ServerOptions.
	Identity *identity.Source
	Policy   *identity.Policy
	// ProbeAddr, when set, is a plaintext listen address that serves GET
	// /healthz, /readyz and /metrics and nothing else: for probes and
	// scrapes that cannot present a certificate (a kubelet's) while the
	// HTTP port speaks mTLS. It carries no API and is never registered.
	ProbeAddr string
	// Limit, when set, admits every request to p.HTTP (not the probes,
	// nor /metrics) through the process's server limit; Parts.Unmetered
	// picks the requests it lets through untouched.
	Limit *resilience.ServerLimit
}

// Parts is what a service hands the runtime.
type Parts struct {
	HTTP http.Handler
	// GRPC, when not nil, is served on GRPCAddr and stopped gracefully,
	// with the standard health service added: it answers NOT_SERVING
	// exactly when GET /readyz fails (draining, or Ready failing). It must
	// not have a health service of its own.
	GRPC *grpc.Server
	// Ready reports whether the instance can take work (its database
	// answers, …); nil means always.
	Ready func(context.Context) error
	// Unmetered, when set, picks the requests Config.Limit does not
	// admit: those whose time is not work (a long poll, which waits for
	// its client).
	Unmetered func(*http.Request) bool
}

// errDraining is the readiness of an instance that is stopping.
var errDraining = errors.New("stopping")

// Run serves p until ctx is done, then stops gracefully. It registers the
// instance once its listeners are open and deregisters it first at stop.
func Run(ctx context.Context, cfg Config, log *slog.Logger, p Parts) error {
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Identity != nil && cfg.Policy == nil {
		return errors.New("an instance with an identity needs a policy")
	}
	hln := cfg.HTTPListener
	if hln == nil {
		var err error
		if hln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
	}
	endpoints := map[string]string{discovery.EndpointHTTP: advertise(hln.Addr(), cfg.AdvertiseHost)}
	if cfg.AdvertiseHTTP != "" {
		endpoints[discovery.EndpointHTTP] = cfg.AdvertiseHTTP
	}
	var pln net.Listener
	if cfg.ProbeAddr != "" {
		var err error
		if pln, err = net.Listen("tcp", cfg.ProbeAddr); err != nil {
			hln.Close()
			return fmt.Errorf("listen for probes: %w", err)
		}
	}
	var gln net.Listener
	if p.GRPC != nil {
		var err error
		if gln, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			hln.Close()
			if pln != nil {
				pln.Close()
			}
			return fmt.Errorf("listen grpc: %w", err)
		}
		endpoints[discovery.EndpointGRPC] = advertise(gln.Addr(), cfg.AdvertiseHost)
	}
	for k, v := range cfg.Endpoints {
		endpoints[k] = v
	}

	var draining atomic.Bool
	// readiness is the one answer of GET /readyz and the gRPC health
	// service: not while draining, nor while Ready fails.
	readiness := func(ctx context.Context) error {
		if draining.Load() {
			return errDraining
		}
		if p.Ready == nil {
			return nil
		}
		// A probe that waits longer than this has given up anyway.
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return p.Ready(ctx)
	}
	if p.GRPC != nil {
		// Registered here, before the server starts, so it answers from
		// the instance's own readiness.
		healthpb.RegisterHealthServer(p.GRPC, newHealth(p.GRPC, readiness))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch err := readiness(r.Context()); {
		case errors.Is(err, errDraining):
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("stopping\n"))
		case err != nil:
			log.WarnContext(r.Context(), "not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	if cfg.Limit != nil {
		// The request's deadline bounds its wait for a permit too.
		mux.Handle("/", rest.Deadline(cfg.Limit.HTTP(p.Unmetered)(p.HTTP)))
	} else {
		mux.Handle("/", p.HTTP)
	}
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	var h http.Handler = mux
	if cfg.Identity != nil {
		hln, h = cfg.Identity.Guard(cfg.Policy, hln, mux)
	}
	srv := rest.NewServer(telemetry.ServerHandler(h, cfg.Metrics, cfg.Public), log)

	log.Info("listening", "endpoints", endpoints)
	inst := discovery.Instance{
		ID:        cfg.ID,
		Service:   cfg.Service,
		Endpoints: endpoints,
		Metadata: map[string]string{
			"pid":     strconv.Itoa(os.Getpid()),
			"version": cfg.Version,
			"started": time.Now().UTC().Format(time.RFC3339),
		},
	}
	if cfg.Identity != nil {
		inst.Metadata[discovery.MetadataMTLS] = "true"
	}

	// Serving stops only after the registration is gone, so callers that
	// still hold this address while the registry tells them find it working.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return rest.Serve(gctx, srv, hln, cfg.Grace) })
	if p.GRPC != nil {
		g.Go(func() error { return serveGRPC(gctx, p.GRPC, gln, cfg.Grace) })
	}
	if pln != nil {
		probes := http.NewServeMux()
		probes.Handle("GET /healthz", mux)
		probes.Handle("GET /readyz", mux)
		if cfg.Metrics != nil {
			probes.Handle("GET /metrics", cfg.Metrics.Handler())
		}
		log.Info("probes listening", "addr", pln.Addr().String())
		g.Go(func() error { return rest.Serve(gctx, rest.NewServer(probes, log), pln, cfg.Grace) })
	}
	regDone := make(chan struct{})
	// Ended by stopReg only, once the instance reports itself draining.
	regCtx, stopReg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReg()
	go func() {
		defer close(regDone)
		if cfg.Registrar == nil {
			<-regCtx.Done()
			return
		}
		cfg.Registrar.KeepAlive(regCtx, inst, cfg.TTL, func(err error) {
			log.Warn("registry heartbeat failed", "err", err)
		})
	}()

	select {
	case <-ctx.Done():
		log.Info("stopping")
	case <-gctx.Done():
		// A server failed on its own; stop the rest.
	}
	draining.Store(true)
	stopReg()
	<-regDone
	stopServing()
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

func serveGRPC(ctx context.Context, s *grpc.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.Stop()
		<-done
	}
	<-errc
	return nil
}

func advertise(addr net.Addr, host string) string {
	h, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if host != "" {
		h = host
	} else if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, port)
}
