package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/auth/grpcauth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustrace"
	"github.com/junction-go/junction/bus/kafkabus"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/bus/rabbitbus"
	"github.com/junction-go/junction/bus/stompbus"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/grpcresolve"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/internal/deadletter"
	deadletterhttp "github.com/junction-go/junction/internal/deadletter/httpapi"
	deadlettermsg "github.com/junction-go/junction/internal/deadletter/msg"
	deadletterstore "github.com/junction-go/junction/internal/deadletter/store"
	"github.com/junction-go/junction/internal/gateway"
	"github.com/junction-go/junction/internal/instance"
	"github.com/junction-go/junction/internal/inventory"
	inventorygrpc "github.com/junction-go/junction/internal/inventory/grpcapi"
	inventoryhttp "github.com/junction-go/junction/internal/inventory/httpapi"
	inventorymsg "github.com/junction-go/junction/internal/inventory/msg"
	inventorystore "github.com/junction-go/junction/internal/inventory/store"
	"github.com/junction-go/junction/internal/notification"
	notificationhttp "github.com/junction-go/junction/internal/notification/httpapi"
	notificationmsg "github.com/junction-go/junction/internal/notification/msg"
	notificationstore "github.com/junction-go/junction/internal/notification/store"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/order/clients"
	orderhttp "github.com/junction-go/junction/internal/order/httpapi"
	ordermsg "github.com/junction-go/junction/internal/order/msg"
	orderstore "github.com/junction-go/junction/internal/order/store"
	paymentclients "github.com/junction-go/junction/internal/payment/clients"
	paymentmsg "github.com/junction-go/junction/internal/payment/msg"
	paymentstore "github.com/junction-go/junction/internal/payment/store"
	"github.com/junction-go/junction/internal/paymentsim"
	"github.com/junction-go/junction/internal/registry"
	registryhttp "github.com/junction-go/junction/internal/registry/httpapi"
	"github.com/junction-go/junction/internal/shipping"
	shippinghttp "github.com/junction-go/junction/internal/shipping/httpapi"
	shippingmsg "github.com/junction-go/junction/internal/shipping/msg"
	shippingstore "github.com/junction-go/junction/internal/shipping/store"
	"github.com/junction-go/junction/internal/user"
	usergrpc "github.com/junction-go/junction/internal/user/grpcapi"
	userhttp "github.com/junction-go/junction/internal/user/httpapi"
	userstore "github.com/junction-go/junction/internal/user/store"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/postgres" // the databases a service may open
	_ "github.com/junction-go/junction/sqldb/sqlite"
	"github.com/junction-go/junction/telemetry"
)

func newServeCommand(getenv func(string) string, stderr io.Writer) *cobra.Command {
	cfg := serveConfig{getenv: getenv}
	cmd := &cobra.Command{
		Use:   "serve <service>",
		Short: "Run one service (registry, broker, gateway or any of the shop's services)",
		Long: `Run one service in the foreground, configured by flags and JUNCTION_* variables.
It seeds demo data only with --seed-demo, which 'junction up' passes.`,
		Args:      usageArgs(cobra.ExactArgs(1)),
		ValidArgs: serviceNames(nil),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Service = args[0]
			if err := cfg.finish(cmd.Flags()); err != nil {
				return err
			}
			// The log's lines are written behind the work that logs
			// them (an access log line per request otherwise costs a
			// system call on the request's path, and one more in up).
			lines := telemetry.NewLogWriter(stderr)
			defer lines.Close()
			cfg.flushLog = lines.Flush
			log := telemetry.NewLoggerFormat(lines, cfg.LogLevel, cfg.LogFormat, cfg.Service, cfg.InstanceID)
			log.Info("starting", "version", version(), "config", cfg.String())
			if cfg.ProfileDir != "" {
				stop, err := cpuProfile(cfg)
				if err != nil {
					return err
				}
				defer stop()
			}
			err := serve(cmd.Context(), cfg, log)
			if err != nil {
				log.Error("failed", "err", err)
			}
			return err
		},
	}
	cfg.flags(cmd.Flags())
	return cmd
}

// cpuProfile writes this process's CPU profile to
// <ProfileDir>/<instance>.cpu.pprof until stop is called; the directory
// is made when missing.
func cpuProfile(cfg serveConfig) (stop func(), err error) {
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	f, err := os.Create(filepath.Join(cfg.ProfileDir, cfg.InstanceID+".cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	row, ok := serviceNamed(cfg.Service)
	if !ok {
		return fmt.Errorf("unknown service %q", cfg.Service)
	}
	if cfg.TLS.Set() {
		ident, err := identity.Load(cfg.TLS)
		if err != nil {
			return err
		}
		if got := identity.Name(ident.ID()); got != cfg.Service {
			return fmt.Errorf("--tls-cert %s is %s's certificate (%s), not %s's", cfg.TLS.Cert, got, ident.ID(), cfg.Service)
		}
		if cfg.policy, err = policyOf(cfg.Service); err != nil {
			return err
		}
		cfg.ident = ident
		// The certificate is read again when whatever renews it writes
		// the files.
		rctx, stop := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() { defer close(renewed); _ = ident.Run(rctx, time.Second, log) }()
		defer func() { stop(); <-renewed }()
		log.Info("mTLS on", "id", ident.ID().String(), "expires", ident.Expires().UTC().Format(time.RFC3339))
	} else if cfg.Service != services.Gateway {
		log.Info("mTLS off: internal ports speak plaintext, and anyone who reaches them is trusted (give --tls-cert, --tls-key and --tls-ca for mTLS)")
	}
	if cfg.Service != services.Registry {
		disc, err := openDiscovery(cfg)
		if err != nil {
			return err
		}
		defer disc.Close()
		cfg.disc = disc
	}
	if cfg.Metrics {
		cfg.metrics = telemetry.NewMetrics()
		meterInboxes(cfg.metrics)
	}
	if cfg.ServerLimit && row.limited {
		cfg.limit = resilience.NewServerLimit(resilience.ServerLimitConfig{Name: cfg.Service, MinLimit: serverLimitFloor, Log: log})
		defer cfg.limit.Close()
		meterServerLimit(cfg.metrics, cfg.limit)
	}
	if cfg.Service != services.Registry && cfg.Service != services.Broker {
		tracing, err := telemetry.StartTracing(ctx, telemetry.TracingConfig{
			Service: cfg.Service, Instance: cfg.InstanceID, Version: version(),
			Getenv: cfg.getenv, Metrics: cfg.metrics, Log: log, Sampler: sampler(cfg.TracesPerSecond),
		})
		if err != nil {
			return err
		}
		defer func() {
			// What is still queued goes out, unless the collector is away.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = tracing.Shutdown(sctx)
		}()
	}
	return row.run(ctx, cfg, log)
}

// serverLimitFloor is the fewest requests, calls and messages a service's
// limit lets in flight whatever their times: its work also waits on its
// database and on the services it calls, and a limit brought down by such
// a wait would refuse work the service itself has room for.
const serverLimitFloor = 20

// sampler decides which new traces this process keeps: every one
// (perSecond < 0) or at most perSecond a second; the calls a kept trace
// makes are kept wherever they go.
func sampler(perSecond float64) sdktrace.Sampler {
	if perSecond < 0 {
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	return sdktrace.ParentBased(telemetry.RateLimitedSampler(perSecond))
}

// httpListener returns the listener a supervisor handed down (so the
// address stays the same across restarts), or a new one on cfg.HTTPAddr.
func httpListener(cfg serveConfig) (net.Listener, error) {
	if cfg.ListenFD > 0 {
		f := os.NewFile(uintptr(cfg.ListenFD), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("inherited listener: %w", err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// registrar is how cfg's instance registers; nil where the platform does.
func registrar(cfg serveConfig) discovery.Registrar {
	if cfg.disc == nil {
		return nil
	}
	return cfg.disc.Registrar
}

func instanceConfig(cfg serveConfig) instance.Config {
	return instance.Config{
		Service:       cfg.Service,
		ID:            cfg.InstanceID,
		Registrar:     registrar(cfg),
		HTTPAddr:      cfg.HTTPAddr,
		GRPCAddr:      cfg.GRPCAddr,
		ProbeAddr:     cfg.ProbeAddr,
		AdvertiseHost: cfg.Advertise,
		AdvertiseHTTP: cfg.AdvertiseHTTP,
		Version:       version(),
		Metrics:       cfg.metrics,
		Identity:      cfg.ident,
		Policy:        cfg.policy,
		Limit:         cfg.limit,
	}
}

func serveRegistry(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	ln, err := httpListener(cfg)
	if err != nil {
		return err
	}
	reg := registry.New(nil)
	meterRegistry(cfg.metrics, reg)
	bg := startLoops(ctx)
	defer bg.stop()
	bg.goRun(func(ctx context.Context) error { return reg.Run(ctx, 500*time.Millisecond) })
	// Readiness probes: an instance that fails two in a row leaves the
	// lookups before its lease ends, and comes back when one passes.
	check := registry.HTTPCheck(discovery.Clients{Secure: &http.Client{Transport: cfg.transport()}, Plain: &http.Client{}})
	bg.every(time.Second, func(ctx context.Context) {
		if n := reg.ProbeAll(ctx, check, 500*time.Millisecond, 2); n > 0 {
			log.Info("instance health changed", "instances", n)
		}
	})
	var may registryhttp.MayRegister
	if cfg.ident != nil {
		may = mayRegister
	}
	var handler http.Handler = registryhttp.Handler(reg, log, may)
	if cfg.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", cfg.metrics.Handler())
		mux.Handle("/", handler)
		handler = cfg.metrics.HTTPMetrics(mux)
	}
	if cfg.ident != nil {
		ln, handler = cfg.ident.Guard(cfg.policy, ln, handler)
	}
	srv := rest.NewServer(handler, log)
	srv.WriteTimeout = registryhttp.MaxWatch + 15*time.Second
	log.Info("listening", "addr", ln.Addr().String())
	return rest.Serve(ctx, srv, ln, 5*time.Second)
}

// serveBroker runs NATS with JetStream in this process and registers its
// client address as the "nats" endpoint of the "broker" service.
func serveBroker(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	host, port, err := net.SplitHostPort(cfg.Broker.Addr)
	if err != nil {
		return err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return err
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: cfg.InstanceID,
		Host:       host,
		Port:       p,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.Database.DataDir, "broker"),
		NoSigs:     true,
		SyncAlways: cfg.Broker.SyncAlways,
		MaxPayload: 1 << 20,
	}
	if cfg.ident != nil {
		// Every client proves its identity with its certificate, which
		// names its user and so its permissions.
		if opts.TLSConfig, err = embeddedBrokerTLS(cfg.ident); err != nil {
			return err
		}
		if opts.Users, err = brokerUsers(); err != nil {
			return err
		}
		opts.TLS, opts.TLSVerify, opts.TLSMap, opts.TLSTimeout = true, true, true, 2
	}
	if cfg.Broker.ClusterAddr != "" {
		if err := clusterOptions(opts, cfg); err != nil {
			return err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	// Asked in short slices, so a stop while it starts is not held up.
	for deadline := time.Now().Add(30 * time.Second); !ns.ReadyForConnections(100 * time.Millisecond); {
		if ctx.Err() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker: not ready for connections within 30s (is %s free?)", cfg.Broker.Addr)
		}
	}
	addr := ns.Addr().String()
	meterBroker(cfg.metrics, ns)
	log.Info("broker ready", "nats", "nats://"+addr, "store", opts.StoreDir, "sync_always", opts.SyncAlways)
	icfg := instanceConfig(cfg)
	icfg.Endpoints = map[string]string{"nats": addr}
	return instance.Run(ctx, icfg, log, instance.Parts{
		HTTP: http.NotFoundHandler(),
		Ready: func(context.Context) error {
			if !ns.Running() || !ns.JetStreamEnabled() {
				return errors.New("broker is not running")
			}
			return nil
		},
	})
}

// natsLogger writes the embedded NATS server's log into the process's:
// its warnings and errors (a route that fails, a stream without a quorum)
// as such, its notices at debug (they narrate every start), and what
// natsHeals names at debug whatever its level.
type natsLogger struct{ log *slog.Logger }

// natsHeals are the NATS server's messages that do not call for anyone:
// a route retried while the other nodes start or restart (it comes up by
// itself), and the warning that the routes' certificates are not checked
// by host name (they are checked by SPIFFE ID, brokerRouteTLS).
var natsHeals = []string{"Error trying to connect to route", "will not be verified"}

func (l natsLogger) at(level slog.Level, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	if slices.ContainsFunc(natsHeals, func(s string) bool { return strings.Contains(msg, s) }) {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, "nats: "+msg)
}

func (l natsLogger) Noticef(format string, v ...any) { l.at(slog.LevelDebug, format, v) }
func (l natsLogger) Warnf(format string, v ...any)   { l.at(slog.LevelWarn, format, v) }
func (l natsLogger) Errorf(format string, v ...any)  { l.at(slog.LevelError, format, v) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.at(slog.LevelError, format, v) }
func (l natsLogger) Debugf(format string, v ...any)  { l.at(slog.LevelDebug, format, v) }
func (l natsLogger) Tracef(string, ...any)           {}

// clusterOptions make the embedded broker one node of a NATS cluster
// named junction: JetStream replicates the streams created with
// replicas (nats://…?replicas=3) over its nodes, and with mTLS the nodes
// take and present only the broker's certificate.
func clusterOptions(opts *server.Options, cfg serveConfig) error {
	host, port, err := net.SplitHostPort(cfg.Broker.ClusterAddr)
	if err != nil {
		return err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{Name: "junction", Host: host, Port: p}
	for _, r := range cfg.Broker.Routes {
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: r})
	}
	if cfg.ident != nil {
		if opts.Cluster.TLSConfig, err = brokerRouteTLS(cfg.ident); err != nil {
			return err
		}
		opts.Cluster.TLSTimeout = 2
	}
	return nil
}

// deps are what a service opens before it serves; close releases them in
// reverse order.
type deps struct {
	db       *sqldb.DB
	resolver *discovery.Resolver // nil unless opened with the broker
	bus      messageBus          // nil unless opened with the broker
	closers  []func()
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// openDeps opens the service's database and, with broker set, a resolver
// over the registry and a connection to the broker.
func openDeps(ctx context.Context, cfg serveConfig, log *slog.Logger, broker bool) (*deps, error) {
	d := &deps{}
	db, err := sqldb.Open(ctx, cfg.Database.URL)
	if err != nil {
		return nil, err
	}
	d.db = db
	d.closers = append(d.closers, func() { db.Close() })
	meterDB(cfg.metrics, db)
	if !broker {
		return d, nil
	}
	d.resolver = discovery.NewResolver(cfg.disc.Source)
	d.closers = append(d.closers, d.resolver.Close)
	b, err := connectBus(ctx, cfg, d.resolver, log)
	if err != nil {
		d.close()
		return nil, err
	}
	d.bus = bustrace.Wrap(meterBus(limitBus(b, cfg.limit), cfg.metrics), bustrace.Config{System: brokerSystem(b), OnProcess: orderOfMessage})
	d.closers = append(d.closers, func() { d.bus.Close() })
	return d, nil
}

// brokerSystem is the messaging.system of b's spans.
func brokerSystem(b messageBus) string {
	switch b.(type) {
	case *natsbus.Bus:
		return "nats"
	case *kafkabus.Bus:
		return "kafka"
	case *rabbitbus.Bus:
		return "rabbitmq"
	case *stompbus.Bus:
		return "activemq"
	}
	return "junction"
}

// orderOfMessage adds the order a message is about to its handler's logs
// and process span: every message of an order's flow has the order's id as
// its correlation id ("123", or "123-cancel" for a cancellation's saga).
func orderOfMessage(ctx context.Context, m *bus.Message) context.Context {
	digits := m.CorrelationID
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	if id, err := strconv.ParseInt(digits, 10, 64); err == nil && id > 0 {
		return telemetry.WithOrderID(ctx, id)
	}
	return ctx
}

func serveUsers(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := userstore.New(ctx, d.db)
	if err != nil {
		return err
	}
	// The signing keys' private halves are in this database: its files are
	// the owner's only.
	if err := ownerOnly(cfg.Database.URL); err != nil {
		return err
	}
	svc := user.NewService(st, cfg.User.TokenTTL, nil)
	if err := svc.Start(ctx); err != nil {
		return err
	}
	if cfg.SeedDemo {
		for _, u := range user.DemoAccounts(cfg.User.DemoPassword) {
			created, err := svc.EnsureUser(ctx, u)
			if err != nil {
				return fmt.Errorf("demo account %s: %w", u.Username, err)
			}
			if created {
				log.Info("created demo account", "username", u.Username, "role", u.Role)
			}
		}
	}
	verifier := auth.NewVerifierFor(user.VerifierScope(cfg.Service), auth.StaticKeySource(svc.JWKS), nil)
	grpcOpts, err := cfg.grpcServerOptions()
	if err != nil {
		return err
	}
	// Keys another instance rotated, and keys that activate or retire.
	bg := startLoops(ctx)
	defer bg.stop()
	bg.goRun(func(ctx context.Context) error { return svc.RunKeys(ctx, 2*time.Second) })
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:      userhttp.Handler(svc, verifier, log),
		Unmetered: userhttp.KeySet,
		GRPC:      usergrpc.NewServer(svc, verifier, grpcOpts...),
		Ready:     ready(st.Ping, d.bus),
	})
}

// ownerOnly makes a SQLite database's files (the database, its WAL and
// shared memory, which SQLite creates with the database's mode) readable
// by their owner only; a URL (PostgreSQL) is the server's business.
func ownerOnly(database string) error {
	if strings.Contains(database, "://") {
		return nil
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(database+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("database %s: %w", database, err)
		}
	}
	return nil
}

func serveInventory(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := inventorystore.New(ctx, d.db)
	if err != nil {
		return err
	}
	svc := inventory.NewService(st)
	if cfg.SeedDemo {
		n, err := svc.Seed(ctx, inventory.DemoCatalogue())
		if err != nil {
			return fmt.Errorf("demo catalogue: %w", err)
		}
		if n > 0 {
			log.Info("added demo products", "products", n)
		}
	}
	bg := startLoops(ctx)
	defer bg.stop()
	bg.relay(st.Outbox(), d.bus, cfg, log)
	subs, err := inventorymsg.Subscribe(ctx, d.bus, d.bus, st, st.Outbox(), log)
	if err != nil {
		return err
	}
	defer closeAll(subs)
	grpcOpts, err := cfg.grpcServerOptions()
	if err != nil {
		return err
	}
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:  inventoryhttp.Handler(svc, log),
		GRPC:  inventorygrpc.NewServer(svc, jwksVerifier(cfg, d.resolver), grpcOpts...),
		Ready: ready(st.Ping, d.bus),
	})
}

func closeAll(subs []bus.Subscription) {
	for _, s := range subs {
		_ = s.Close()
	}
}

// loops are a service's background loops (outbox relay, timers); stop
// cancels them and waits for every one.
type loops struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoops(ctx context.Context) *loops {
	l := &loops{}
	l.ctx, l.cancel = context.WithCancel(ctx)
	return l
}

func (l *loops) goRun(fn func(ctx context.Context) error) {
	l.wg.Add(1)
	go func() { defer l.wg.Done(); _ = fn(l.ctx) }()
}

// every runs fn each interval until the loops stop.
func (l *loops) every(interval time.Duration, fn func(ctx context.Context)) {
	l.goRun(func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	})
}

func (l *loops) stop() { l.cancel(); l.wg.Wait() }

// relay runs the outbox relay of ob, publishing with pub.
func (l *loops) relay(ob *outbox.Outbox, pub bus.Publisher, cfg serveConfig, log *slog.Logger) {
	meterOutbox(cfg.metrics, ob)
	l.goRun(outbox.NewRelay(ob, pub, outbox.RelayConfig{Holder: cfg.InstanceID, Failpoint: failpoints(cfg, log)}, log).Run)
}

// grpcClient dials service over client-side discovery (mTLS where cfg
// has a certificate), forwarding the caller's token; instrument are the
// process's telemetry.GRPCDialOptions.
func grpcClient(cfg serveConfig, r *discovery.Resolver, service string, instrument []grpc.DialOption) (*grpc.ClientConn, error) {
	creds, err := cfg.grpcCredentials(service)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(grpcresolve.Target(service), append([]grpc.DialOption{
		grpc.WithResolvers(grpcresolve.NewBuilder(r)),
		grpc.WithDefaultServiceConfig(grpcresolve.ServiceConfig),
		creds,
		grpcauth.ForwardToken(),
		// The caller's priority goes with the call (resilience.Priority).
		grpc.WithChainUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptorWithLevel()),
	}, instrument...)...)
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", service, err)
	}
	return conn, nil
}

func serveOrders(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	// The order's sagas start and end in the store's transactions: the
	// engine's definitions end through the store (Ended), and the store
	// starts sagas with the engine.
	ob, err := outbox.New(ctx, d.db)
	if err != nil {
		return err
	}
	waiters := order.NewWaiters()
	var admission *order.Admission // nil: every order taken (--order-admission=false)
	if cfg.OrderAdmission {
		admission = order.NewAdmission()
	}
	ended := func(in *saga.Instance) {
		// The permit first: the verdict's answer tells the gateway the
		// room it leaves.
		if admission != nil {
			admission.Ended(in)
		}
		waiters.Ended(in)
	}
	counted := meterSagaEvents(cfg.metrics)
	place, cancel := order.PlaceOrderSaga(), order.CancelOrderSaga()
	place.OnEnd, cancel.OnEnd = orderstore.Ended(d.db, ob, order.PlaceEnded), orderstore.Ended(d.db, ob, order.CancelEnded)
	engine, err := saga.New(ctx, d.db, ob, saga.Config{
		ReplyTopic: events.TopicOrderReplies, Source: events.SourceOrderService,
		Failpoint: failpoints(cfg, log), Ended: func(in *saga.Instance) { ended(in); counted.ended(in) }, Recorded: counted.recorded, Journal: orderstore.Journal(d.db, ob),
	}, log, place, cancel)
	if err != nil {
		return err
	}
	st, err := orderstore.New(ctx, d.db, ob, engine)
	if err != nil {
		return err
	}
	instrument := telemetry.GRPCDialOptions(cfg.metrics)
	users, err := grpcClient(cfg, d.resolver, services.User, instrument)
	if err != nil {
		return err
	}
	defer users.Close()
	stock, err := grpcClient(cfg, d.resolver, services.Inventory, instrument)
	if err != nil {
		return err
	}
	defer stock.Close()
	bg := startLoops(ctx)
	defer bg.stop()
	bg.relay(st.Outbox(), d.bus, cfg, log)
	bg.goRun(engine.Run)
	meterSagas(cfg.metrics, engine)
	subs, err := ordermsg.Subscribe(ctx, d.bus, d.bus, st, log)
	if err != nil {
		return err
	}
	defer closeAll(subs)

	usersPolicy, stockPolicy := resilience.New(clients.UserServicePolicy(log)), resilience.New(clients.InventoryPolicy(log))
	meterPolicies(cfg.metrics, map[string]*resilience.Policy{services.User: usersPolicy, services.Inventory: stockPolicy})
	svc := order.NewService(st, waiters,
		clients.NewUsers(users, usersPolicy),
		clients.NewInventory(stock, stockPolicy, log),
		nil)
	if admission != nil {
		svc.Admit(admission)
		// Every second, the permits of orders another replica ended.
		bg.every(time.Second, func(ctx context.Context) {
			admission.Sweep(ctx, func(ctx context.Context, ids []int64) map[int64]bool {
				settled, err := st.Settled(ctx, ids)
				if err != nil {
					return nil // looked at again next second
				}
				return settled
			})
		})
		meterAdmission(cfg.metrics, admission)
	}
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:      orderhttp.Handler(svc, jwksVerifier(cfg, d.resolver), log),
		Unmetered: orderhttp.LongPoll,
		Ready:     ready(st.Ping, d.bus),
	})
}

func servePayments(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := paymentstore.New(ctx, d.db)
	if err != nil {
		return err
	}
	bg := startLoops(ctx)
	defer bg.stop()
	bg.relay(st.Outbox(), d.bus, cfg, log)
	providerPolicy := resilience.New(paymentclients.ProviderPolicy(log))
	meterPolicies(cfg.metrics, map[string]*resilience.Policy{services.PaymentProvider: providerPolicy})
	provider := paymentclients.NewProvider("http://"+services.PaymentProvider,
		&http.Client{Transport: telemetry.ClientTransport(&discovery.Transport{Resolver: d.resolver, Balancer: &discovery.Balancer{Resolver: d.resolver}, Base: cfg.transport()})},
		providerPolicy)
	sub, err := paymentmsg.Subscribe(ctx, d.bus, d.bus, st, provider, failpoints(cfg, log), log)
	if err != nil {
		return err
	}
	defer sub.Close()
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{HTTP: http.NotFoundHandler(), Ready: ready(st.Ping, d.bus)})
}

func servePaymentProvider(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{HTTP: paymentsim.New(log).Handler()})
}

func serveShipping(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := shippingstore.New(ctx, d.db)
	if err != nil {
		return err
	}
	bg := startLoops(ctx)
	defer bg.stop()
	bg.relay(st.Outbox(), d.bus, cfg, log)
	bg.goRun(func(ctx context.Context) error { return shipping.RunDispatcher(ctx, st, 100*time.Millisecond, log) })
	subs, err := shippingmsg.Subscribe(ctx, d.bus, d.bus, st, cfg.Shipping, log)
	if err != nil {
		return err
	}
	defer closeAll(subs)
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:  shippinghttp.Handler(shipping.NewService(st), jwksVerifier(cfg, d.resolver), log),
		Ready: ready(st.Ping, d.bus),
	})
}

func serveNotifications(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := notificationstore.New(ctx, d.db)
	if err != nil {
		return err
	}
	subs, err := notificationmsg.Subscribe(ctx, d.bus, d.bus, st, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range subs {
			_ = s.Close()
		}
	}()
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:  notificationhttp.Handler(notification.NewService(st), jwksVerifier(cfg, d.resolver), log),
		Ready: ready(st.Ping, d.bus),
	})
}

func serveDeadLetters(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	d, err := openDeps(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	st, err := deadletterstore.New(ctx, d.db)
	if err != nil {
		return err
	}
	sub, err := deadlettermsg.Subscribe(ctx, d.bus, st, log)
	if err != nil {
		return err
	}
	defer sub.Close()
	return instance.Run(ctx, instanceConfig(cfg), log, instance.Parts{
		HTTP:  deadletterhttp.Handler(deadletter.NewService(st, d.bus), jwksVerifier(cfg, d.resolver), log),
		Ready: ready(st.Ping, d.bus),
	})
}

// messageBus is a connection to a broker that both publishes and
// subscribes.
// ready is a service's readiness: its database answers and, where it has
// one that can tell, its broker does too. An instance cut off from the
// broker gets no traffic until it is back.
func ready(ping func(context.Context) error, b messageBus) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return err
		}
		return checkBroker(ctx, b)
	}
}

// checkBroker asks b for the broker's round trip where b can tell
// (bus.Checker); nil where it cannot.
func checkBroker(ctx context.Context, b messageBus) error {
	if c, ok := b.(bus.Checker); ok {
		return c.Check(ctx)
	}
	return nil
}

type messageBus interface {
	bus.Publisher
	bus.Subscriber
}

// limitedBus admits every delivery to its subscriptions' handlers through
// the process's server limit (resilience.ServerLimit.Messages).
type limitedBus struct {
	messageBus
	limit *resilience.ServerLimit
}

// limitBus returns b with its deliveries admitted through l; b itself
// when l is nil.
func limitBus(b messageBus, l *resilience.ServerLimit) messageBus {
	if l == nil {
		return b
	}
	return &limitedBus{messageBus: b, limit: l}
}

func (b *limitedBus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	return b.messageBus.Subscribe(ctx, topic, group, b.limit.Messages(h))
}

// Check passes the broker's round trip through, for readiness.
func (b *limitedBus) Check(ctx context.Context) error { return checkBroker(ctx, b.messageBus) }

// brokerWait bounds how long a service waits at start for its broker.
const brokerWait = 2 * time.Minute

// connectBus connects to the broker: the one cfg names, or else the one
// registered as "broker". A broker that is not there or does not answer
// yet is waited for, up to brokerWait, retrying with backoff and saying so
// once at info: a service started before its broker (or while it
// restarts) waits instead of exiting. Once connected, the adapters
// reconnect by themselves.
func connectBus(ctx context.Context, cfg serveConfig, r *discovery.Resolver, log *slog.Logger) (messageBus, error) {
	wctx, cancel := context.WithTimeout(ctx, brokerWait)
	defer cancel()
	started := time.Now()
	wait := 50 * time.Millisecond
	said := false
	for {
		url, err := cfg.Broker.URL, error(nil)
		if url == "" {
			var addr string
			if addr, err = r.Pick(wctx, "broker", discovery.EndpointNATS); err == nil {
				url = "nats://" + addr
			} else {
				err = fmt.Errorf("no broker registered (set --broker or register one): %w", err)
			}
		}
		if err == nil {
			var b messageBus
			if b, err = openBus(url, cfg.InstanceID, cfg.brokerTLS(), log); err == nil {
				log.Info("connected to the broker", "url", redactURL(url), "after", time.Since(started).Round(time.Millisecond).String())
				return b, nil
			}
			var bad badBrokerURL
			if errors.As(err, &bad) {
				return nil, err
			}
		}
		if !said && time.Since(started) > 500*time.Millisecond {
			log.Info("waiting for the broker", "url", redactURL(cfg.Broker.URL), "reason", err.Error())
			said = true
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("broker not reachable within %v: %w", brokerWait, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// badBrokerURL is a broker URL no retry can fix.
type badBrokerURL struct{ error }

// openBus picks the adapter by the URL's scheme:
//
//	nats://host:port[,host:port][?replicas=N]   NATS JetStream (N copies of each stream)
//	kafka://host:port[,host:port]  Kafka
//	amqp://user:pass@host:port/vh  RabbitMQ
//	stomp://[user:pass@]host:port  ActiveMQ (STOMP 1.2)
func openBus(rawURL, name string, tlsConfig *tls.Config, log *slog.Logger) (messageBus, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, badBrokerURL{fmt.Errorf("broker %q: want scheme://address", redactURL(rawURL))}
	}
	switch scheme {
	case "nats":
		servers, replicas, err := natsReplicas(rawURL)
		if err != nil {
			return nil, badBrokerURL{err}
		}
		return natsbus.Connect(servers, natsbus.Config{Name: name, TLS: tlsConfig, Replicas: replicas,
			OnResume: func(topic, group string, why error) {
				log.Warn("consuming again after the broker ended a subscription's pull", "topic", topic, "group", group, "reason", why.Error())
			}})
	case "kafka":
		return kafkabus.Connect(kafkabus.Config{Brokers: strings.Split(rest, ",")})
	case "amqp", "amqps":
		return rabbitbus.Connect(rabbitbus.Config{URL: rawURL, LiveTopics: []string{events.TopicOrderHistory}})
	case "stomp":
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, badBrokerURL{fmt.Errorf("broker url: %w", err)}
		}
		pass, _ := u.User.Password()
		return stompbus.Connect(stompbus.Config{Addr: u.Host, Login: u.User.Username(), Passcode: pass})
	default:
		return nil, badBrokerURL{fmt.Errorf("broker %q: unknown scheme %q; one of nats, kafka, amqp, stomp", redactURL(rawURL), scheme)}
	}
}

func serveGateway(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	ln, err := httpListener(cfg)
	if err != nil {
		return err
	}
	resolver := discovery.NewResolver(cfg.disc.Source)
	defer resolver.Close()
	verifier := jwksVerifier(cfg, resolver)
	var upstream *tls.Config
	if cfg.ident != nil {
		upstream = cfg.ident.ClientConfig()
	}
	gw := gateway.New(resolver, verifier, cfg.Limits, upstream, log)
	// WebSockets: this instance follows every order's history itself, and
	// reads what it missed from order-service as the client.
	b, err := connectBus(ctx, cfg, resolver, log)
	if err != nil {
		return err
	}
	defer b.Close()
	follower, ok := b.(bus.LiveSubscriber)
	if !ok {
		return fmt.Errorf("broker %T cannot follow a topic live", b)
	}
	orders := &http.Client{Transport: telemetry.ClientTransport(&discovery.Transport{Resolver: resolver, Balancer: &discovery.Balancer{Resolver: resolver}, Base: cfg.transport()})}
	live := gateway.NewLive(verifier, gateway.OrderHistory(orders), cfg.Live, log)
	feed, err := follower.SubscribeLive(ctx, events.TopicOrderHistory, live.Deliver)
	if err != nil {
		return err
	}
	defer feed.Close()
	gw.ServeLive(live)
	gw.ServeOps(gateway.OpsConfig{Source: cfg.disc.Source, Transport: cfg.transport(), Traces: cfg.getenv("JUNCTION_TRACES_URL"), Control: cfg.getenv("JUNCTION_CONTROL_URL")})
	meterGateway(cfg.metrics, gw, live)
	// On a stop, the WebSockets close with 1001 as the instance leaves the
	// registry, so their clients resume on another replica; on an error
	// return too.
	bg := startLoops(ctx)
	bg.goRun(func(ctx context.Context) error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		live.Shutdown(sctx)
		return nil
	})
	bg.goRun(func(ctx context.Context) error { gw.ReportRefusals(ctx); return nil })
	defer bg.stop()
	icfg := instanceConfig(cfg)
	// The gateway's port is the shop's front door: public, no mTLS.
	icfg.HTTPListener, icfg.Public, icfg.Identity = ln, true, nil
	return instance.Run(ctx, icfg, log, instance.Parts{HTTP: gw.Handler()})
}

// jwksVerifier verifies tokens against user-service's published keys, found
// through the registry.
func jwksVerifier(cfg serveConfig, r *discovery.Resolver) *auth.Verifier {
	client := &http.Client{Transport: &discovery.Transport{Resolver: r, Base: cfg.transport()}}
	// Each verifier requires its own service's name in a token's aud.
	return auth.NewVerifierFor(user.VerifierScope(cfg.Service), auth.HTTPKeySource(client, "http://"+services.User+"/.well-known/jwks.json"), nil)
}
