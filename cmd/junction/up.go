package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/internal/supervisor"
)

type upConfig struct {
	DataDir      string
	Port         int
	Replicas     []string
	DemoPassword string
	LogLevel     string
	LogFormat    string
	ReadyTimeout time.Duration
	Broker       string
	FaultLinks   bool
	// OTLP is a collector's OTLP/HTTP base URL the trace store forwards
	// to.
	OTLP string
	// MTLS gives every instance a certificate from a CA in the data
	// folder, valid for CertTTL and renewed at half of it; without it
	// the internal ports speak plaintext.
	MTLS    bool
	CertTTL time.Duration
	// Database, when set, is a PostgreSQL server on which each service
	// that stores gets a schema and a role of its own, instead of its
	// SQLite file under DataDir.
	Database string
	// getenv reads the OTEL_* variables the user may have set.
	getenv func(string) string
}

func newUpCommand(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cfg := upConfig{getenv: getenv}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole system on this machine, each service as its own process",
		Long: `Run the whole shop on this machine: an embedded NATS JetStream broker, the
registry, every service and the gateway, each as its own process from this
binary, supervised (a process that dies is restarted). Data lives under --data;
the next 'up' with the same folder resumes where this one stopped. Ctrl-C stops
everything.

Local mode seeds demo accounts (alice and bob, customers; admin, administrator)
with the password given by --demo-password, and a small catalogue.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.check(); err != nil {
				return asUsage(err)
			}
			return up(cmd.Context(), cfg, stdout)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.DataDir, "data", ".junction", "data folder (databases, broker store)")
	envFlag(fs, "data", "JUNCTION_DATA")
	fs.IntVar(&cfg.Port, "port", 8080, "gateway port (0 picks a free one)")
	envFlag(fs, "port", "JUNCTION_PORT")
	fs.StringArrayVar(&cfg.Replicas, "replicas", nil, "instances of a service, as service=N (repeatable; the variable takes a comma-separated list)")
	envFlag(fs, "replicas", "JUNCTION_REPLICAS")
	fs.StringVar(&cfg.DemoPassword, "demo-password", "junction", "password of the demo accounts when they are created")
	envFlag(fs, "demo-password", "JUNCTION_DEMO_PASSWORD")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level of every service: debug, info, warn or error")
	envFlag(fs, "log-level", "JUNCTION_LOG_LEVEL")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log format of every service: json, or ecs (Elastic Common Schema field names)")
	envFlag(fs, "log-format", "JUNCTION_LOG_FORMAT")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 60*time.Second, "how long to wait for every service to be ready")
	envFlag(fs, "ready-timeout", "JUNCTION_READY_TIMEOUT")
	fs.StringVar(&cfg.Broker, "broker", "", "use this broker instead of starting the embedded NATS: "+brokerSchemes)
	envFlag(fs, "broker", "JUNCTION_BROKER")
	fs.BoolVar(&cfg.FaultLinks, "fault-links", false, "put a Toxiproxy link in front of every instance's HTTP port and of its broker connection, for 'junction chaos link'")
	envFlag(fs, "fault-links", "JUNCTION_FAULT_LINKS")
	fs.StringVar(&cfg.OTLP, "otlp", "", "also send every trace to this OTLP/HTTP collector (Jaeger: http://127.0.0.1:4318); without it they stay in up's trace store only")
	envFlag(fs, "otlp", "JUNCTION_OTLP")
	fs.BoolVar(&cfg.MTLS, "mtls", true, "mTLS on every internal port, with certificates from a CA in <data>/pki (false: plaintext, to measure what mTLS costs)")
	envFlag(fs, "mtls", "JUNCTION_MTLS")
	fs.DurationVar(&cfg.CertTTL, "cert-ttl", 24*time.Hour, "lifetime of the instances' certificates, 10s to 720h; each is renewed when half of it is gone")
	envFlag(fs, "cert-ttl", "JUNCTION_CERT_TTL")
	fs.StringVar(&cfg.Database, "database", "", "run every service on this PostgreSQL server, each in a schema and with a role of its own made on start (postgres://user@host:port/db; the user must be able to create roles), instead of SQLite files under --data")
	envFlag(fs, "database", "JUNCTION_UP_DATABASE")
	return cmd
}

// userOTLP reports whether the user's own OTEL_* variables say where
// traces go (or that there are none): up then passes them on unchanged
// and runs no trace store.
func (cfg upConfig) userOTLP() bool {
	return cfg.getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || cfg.getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" ||
		strings.EqualFold(cfg.getenv("OTEL_SDK_DISABLED"), "true")
}

// parseReplicas returns the instances of each service: 1 of each, or
// what specs ("service=N") say of one that scales.
func parseReplicas(specs []string) (map[string]int, error) {
	n := map[string]int{}
	for _, s := range serviceTable {
		n[s.name] = 1
	}
	scaled := serviceNames(func(s service) bool { return s.scales })
	for _, spec := range specs {
		name, count, ok := strings.Cut(spec, "=")
		c, err := strconv.Atoi(count)
		if !ok || err != nil || c < 1 || c > 16 {
			return nil, fmt.Errorf("--replicas (JUNCTION_REPLICAS) %q: want service=N with N from 1 to 16", spec)
		}
		if !slices.Contains(scaled, name) {
			return nil, fmt.Errorf("--replicas (JUNCTION_REPLICAS) %q: %s cannot be scaled; one of: %s", spec, name, strings.Join(scaled, ", "))
		}
		n[name] = c
	}
	return n, nil
}

// check validates the settings before anything starts.
func (cfg upConfig) check() error {
	if _, err := parseReplicas(cfg.Replicas); err != nil {
		return err
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return fmt.Errorf("--port (JUNCTION_PORT) %d is not a port (0 to 65535)", cfg.Port)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level (JUNCTION_LOG_LEVEL) %q: want debug, info, warn or error", cfg.LogLevel)
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "ecs" {
		return fmt.Errorf("--log-format (JUNCTION_LOG_FORMAT) %q: want json or ecs", cfg.LogFormat)
	}
	if cfg.CertTTL < 10*time.Second || cfg.CertTTL > 720*time.Hour {
		return fmt.Errorf("--cert-ttl (JUNCTION_CERT_TTL) %v: want 10s to 720h", cfg.CertTTL)
	}
	if cfg.ReadyTimeout <= 0 {
		return fmt.Errorf("--ready-timeout (JUNCTION_READY_TIMEOUT) %v: must be positive", cfg.ReadyTimeout)
	}
	if n := len(cfg.DemoPassword); n < 8 || n > 72 {
		return fmt.Errorf("--demo-password (JUNCTION_DEMO_PASSWORD): must be 8 to 72 bytes")
	}
	if cfg.OTLP != "" {
		u, err := url.Parse(cfg.OTLP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--otlp (JUNCTION_OTLP) %q: want a collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318", cfg.OTLP)
		}
		if cfg.userOTLP() {
			return errors.New("--otlp (JUNCTION_OTLP) and OTEL_EXPORTER_OTLP_ENDPOINT both say where traces go: give one")
		}
	}
	if err := checkDatabaseURL("--database (JUNCTION_UP_DATABASE)", cfg.Database); err != nil {
		return err
	}
	return checkBrokerURL("--broker (JUNCTION_BROKER)", cfg.Broker)
}

func up(ctx context.Context, cfg upConfig, stdout io.Writer) error {
	started := time.Now()
	replicas, err := parseReplicas(cfg.Replicas)
	if err != nil {
		return err
	}
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	unlock, err := lockDir(data)
	if err != nil {
		return err
	}
	defer unlock()

	logf := func(format string, args ...any) {
		fmt.Fprintf(stdout, "%-20s| %s\n", "junction", fmt.Sprintf(format, args...))
	}

	regLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("registry listener: %w", err)
	}
	regFile, err := regLn.(*net.TCPListener).File()
	regLn.Close()
	if err != nil {
		return err
	}
	defer regFile.Close()
	gwLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("gateway port %d: %w (choose another with --port)", cfg.Port, err)
	}
	gwAddr := gwLn.Addr().String()
	gwFile, err := gwLn.(*net.TCPListener).File()
	gwLn.Close()
	if err != nil {
		return err
	}
	defer gwFile.Close()
	// With mTLS, every instance gets a certificate of its service before
	// it starts, renewed while it runs; up itself and the command line
	// use the operator's.
	var certs *pki
	var operator *identity.Source
	opTransport := http.DefaultTransport
	scheme := "http://"
	if cfg.MTLS {
		if certs, err = openPKI(data, cfg.CertTTL); err != nil {
			return err
		}
		if operator, err = certs.operator(); err != nil {
			return err
		}
		opTransport, scheme = operator.Transport(), "https://"
		renewCtx, stopRenewing := context.WithCancel(ctx)
		var renewing sync.WaitGroup
		renewing.Go(func() { certs.run(renewCtx, logf) })
		renewing.Go(func() { _ = operator.Run(renewCtx, time.Second, localLog(logf)) })
		defer func() { stopRenewing(); renewing.Wait() }()
	} else if err := removeOperatorCert(data); err != nil {
		return err
	}
	registryURL := scheme + regLn.Addr().String()
	gatewayURL := "http://" + gwAddr
	brokerURL, brokerAddr := cfg.Broker, ""
	if brokerURL == "" {
		// A port fixed for this run, so clients reconnect to a restarted
		// broker where they left it. Never NATS's usual 4222.
		if brokerAddr, err = fixedPort(); err != nil {
			return fmt.Errorf("broker port: %w", err)
		}
		brokerURL = "nats://" + brokerAddr
	}

	var databases map[string]string // service → its database URL; nil: SQLite
	if cfg.Database != "" {
		var release func()
		if databases, release, err = serviceDatabases(ctx, cfg.Database, serviceNames(func(s service) bool { return s.stores })); err != nil {
			return err
		}
		defer release()
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	var traces *traceStore
	if !cfg.userOTLP() {
		if traces, err = startTraceStore(strings.TrimSuffix(cfg.OTLP, "/"), logf); err != nil {
			return err
		}
		defer traces.close()
	}
	base := append(os.Environ(),
		"JUNCTION_REGISTRY_URL="+registryURL,
		"JUNCTION_DATA="+data,
		"JUNCTION_LOG_LEVEL="+cfg.LogLevel,
		"JUNCTION_LOG_FORMAT="+cfg.LogFormat,
		"JUNCTION_BROKER="+brokerURL,
		// The embedded broker takes only clients with a certificate.
		"JUNCTION_BROKER_TLS="+strconv.FormatBool(cfg.MTLS && cfg.Broker == ""),
		// The demo accounts and catalogue, made by their own services.
		"JUNCTION_SEED_DEMO=true",
		"JUNCTION_DEMO_PASSWORD="+cfg.DemoPassword,
	)
	if traces != nil {
		// Every service exports its spans to the trace store.
		base = append(base, "OTEL_EXPORTER_OTLP_ENDPOINT="+traces.url, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "JUNCTION_TRACES_URL="+traces.url)
	}
	var links *faultLinks
	if cfg.FaultLinks {
		if links, err = startFaultLinks(brokerURL); err != nil {
			return err
		}
		defer links.close()
	}
	linksAPI := ""
	if links != nil {
		linksAPI = links.api
	}
	regAt := registryAt{url: registryURL, rt: opTransport}
	ctl, err := startControl(regAt, linksAPI, operator, logf)
	if err != nil {
		return err
	}
	defer ctl.close()
	base = append(base, "JUNCTION_CONTROL_URL="+ctl.url)
	reg := regAt.client()
	// What the tiers above wait for (the table's ready column).
	readyCheck := func(row service) func(context.Context) error {
		switch row.ready {
		case readyAnswers:
			return func(ctx context.Context) error { _, err := reg.Catalog(ctx); return err }
		case readyRegistered:
			return registered(reg, row.name)
		}
		return nil
	}
	var specs []supervisor.Spec
	add := func(row service, i int, listener *os.File) error {
		id := fmt.Sprintf("%s-%d", row.name, i)
		env := append(slices.Clip(base), "JUNCTION_INSTANCE_ID="+id, "JUNCTION_BROKER_ADDR="+brokerAddr)
		if db, ok := databases[row.name]; ok {
			env = append(env, "JUNCTION_DATABASE_URL="+db)
		}
		if certs != nil {
			// The gateway's own port stays public; its calls present it.
			f, err := certs.issue(id, row.name)
			if err != nil {
				return err
			}
			env = append(env, tlsEnv(f)...)
		}
		s := supervisor.Spec{Name: id, Path: exe, Args: []string{"serve", row.name}, Tier: row.tier, Ready: readyCheck(row)}
		if listener != nil {
			s.ExtraFiles = []*os.File{listener}
			env = append(env, "JUNCTION_LISTEN_FD=3")
		}
		if links != nil && row.scales && row.name != services.Gateway {
			linkEnv, err := links.add(id)
			if err != nil {
				return err
			}
			env = append(env, linkEnv...)
		}
		s.Env = env
		specs = append(specs, s)
		return nil
	}
	// Sockets up holds for the whole run, so their addresses outlive
	// restarts.
	held := map[string]*os.File{services.Registry: regFile, services.Gateway: gwFile}
	for _, row := range serviceTable {
		if row.name == services.Broker && cfg.Broker != "" {
			continue // an external broker
		}
		for i := 1; i <= replicas[row.name]; i++ {
			if err := add(row, i, held[row.name]); err != nil {
				return err
			}
		}
	}

	sup := &supervisor.Supervisor{
		Out:   stdout,
		Color: isTerminal(stdout),
		Logf:  logf,
		OnExit: func(s supervisor.Spec, _ error) {
			// Take the dead instance out of lookups now rather than when its
			// lease lapses; its restart registers it again.
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = reg.Deregister(dctx, s.Name)
		},
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- sup.Run(runCtx, specs) }()
	if links != nil {
		// Listed in the registry, so 'junction chaos link' finds it.
		go reg.KeepAlive(runCtx, discovery.Instance{ID: faultLinksService, Service: faultLinksService,
			Endpoints: map[string]string{discovery.EndpointHTTP: links.api}}, 10*time.Second, nil)
	}

	ready := map[string]int{}
	for _, row := range serviceTable {
		switch {
		case row.name == services.Registry: // it answers the question itself
		case row.name == services.Broker && cfg.Broker != "":
		default:
			ready[row.name] = replicas[row.name]
		}
	}
	err = waitReady(ctx, reg, gatewayURL, ready, cfg.ReadyTimeout)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "\njunction is ready in %.1fs\n", time.Since(started).Seconds())
		fmt.Fprintf(stdout, "  shop:     %s/ (ops dashboard: %s/ops)\n", gatewayURL, gatewayURL)
		fmt.Fprintf(stdout, "  gateway:  %s\n", gatewayURL)
		fmt.Fprintf(stdout, "  registry: %s\n", registryURL)
		fmt.Fprintf(stdout, "  broker:   %s\n", redactURL(brokerURL))
		switch {
		case traces != nil && cfg.OTLP != "":
			fmt.Fprintf(stdout, "  traces:   %s/v1/traces (the latest; an order's: /v1/orders/{id}/traces), also sent to %s\n", traces.url, cfg.OTLP)
		case traces != nil:
			fmt.Fprintf(stdout, "  traces:   %s/v1/traces (the latest; an order's: /v1/orders/{id}/traces)\n", traces.url)
		case strings.EqualFold(cfg.getenv("OTEL_SDK_DISABLED"), "true"):
			fmt.Fprintf(stdout, "  traces:   none (OTEL_SDK_DISABLED)\n")
		default:
			fmt.Fprintf(stdout, "  traces:   sent to %s (OTEL_EXPORTER_OTLP_*)\n", cmp.Or(cfg.getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), cfg.getenv("OTEL_EXPORTER_OTLP_ENDPOINT")))
		}
		if links != nil {
			fmt.Fprintf(stdout, "  links:    http://%s (Toxiproxy API; junction chaos links)\n", links.api)
		}
		if certs != nil {
			fmt.Fprintf(stdout, "  mTLS:     every internal port; CA and certificates in %s (renewed every %s; junction chaos uses operator.crt)\n", pkiDir(data), strings.TrimSuffix(strings.TrimSuffix((cfg.CertTTL/2).String(), "0s"), "0m"))
		} else {
			fmt.Fprintf(stdout, "  mTLS:     off (--mtls=false): the internal ports speak plaintext\n")
		}
		if cfg.Database != "" {
			fmt.Fprintf(stdout, "  database: %s (a schema and a role per service)\n", redactURL(cfg.Database))
		}
		fmt.Fprintf(stdout, "  data:     %s\n", data)
		fmt.Fprintf(stdout, "  log in as alice or bob (customers) or admin, password %q; Ctrl-C stops.\n\n", cfg.DemoPassword)
	case ctx.Err() == nil:
		logf("not ready after %v: %v (still trying; see the logs above)", cfg.ReadyTimeout, err)
	}
	<-ctx.Done()
	logf("stopping")
	stop()
	err = <-done
	logf("stopped")
	return err
}

// waitReady waits until every service has its instances registered and the
// gateway answers /readyz.
func waitReady(ctx context.Context, reg *discovery.Client, gatewayURL string, want map[string]int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	missing := "registry"
	for {
		if cat, err := reg.Catalog(ctx); err == nil {
			have := map[string]int{}
			for _, v := range cat.Services {
				have[v.Service] = len(v.Instances)
			}
			missing = ""
			for svc, n := range want {
				if have[svc] < n {
					missing += fmt.Sprintf(" %s (%d of %d)", svc, have[svc], n)
				}
			}
			if missing == "" {
				resp, err := hc.Get(gatewayURL + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return nil
					}
				}
				missing = "gateway readiness"
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for%s", missing)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// registered reports whether service has an instance in the registry.
func registered(reg *discovery.Client, service string) func(context.Context) error {
	return func(ctx context.Context) error {
		v, err := reg.Lookup(ctx, service)
		if err != nil {
			return err
		}
		if len(v.Instances) == 0 {
			return fmt.Errorf("%s is not registered yet", service)
		}
		return nil
	}
}

// fixedPort returns a loopback address, for a server that binds it later
// (the embedded broker, an instance behind a fault link), with a port that
// is free and outside the range the kernel hands out to outgoing
// connections: a port from that range could be taken by a client's own
// socket before the server binds it (a client retrying a connection to a
// local port nobody listens on can even connect to itself, and then holds
// the port). Where the range leaves no room below it, any free port.
func fixedPort() (string, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const from = 10000
	for range 100 {
		if lo-from < 1000 {
			break
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(from+rand.IntN(lo-from)))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// lockDir takes an exclusive lock on the data folder, so two `up`s never
// share one.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "up.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another 'junction up' is using %s", dir)
		}
		return nil, fmt.Errorf("lock data folder: %w", err)
	}
	return func() { f.Close() }, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
