package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/internal/gateway"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/internal/user"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/telemetry"
)

// serveConfig is what `junction serve` reads, once, from flags and the
// JUNCTION_* environment (a flag wins over its variable; see envFlag).
type serveConfig struct {
	// flushLog writes out the log lines written so far (the process's
	// LogWriter), before a failpoint ends the process.
	flushLog   func()
	Service    string
	InstanceID string
	// The dependencies every service shares.
	Discovery discoveryConfig
	Database  databaseConfig
	Broker    brokerConfig
	// disc is the opened discovery backend, and metrics the process's
	// registry, both set by serve.
	disc    *discoveryBackend
	metrics *telemetry.Metrics
	// getenv reads the OTEL_* variables.
	getenv func(string) string
	// Where this instance listens and what it registers.
	HTTPAddr string
	GRPCAddr string
	// ProbeAddr serves only /healthz, /readyz and /metrics, in plaintext.
	ProbeAddr string
	Advertise string
	// AdvertiseHTTP replaces the whole registered HTTP address.
	AdvertiseHTTP string
	ListenFD      int
	LogLevel      slog.Level
	LogFormat     string
	// The services' own settings, each validated by its own type.
	Limits   gateway.Limits
	Live     gateway.LiveLimits
	User     user.Config
	Shipping shipping.Config
	// SeedDemo creates the demo accounts (user-service) and the demo
	// catalogue (inventory-service) when they are missing.
	SeedDemo bool
	// OrderAdmission bounds order-service's orders in flight (order.Admission).
	OrderAdmission bool
	// ServerLimit admits the work of a service's servers and consumers
	// through one adaptive limit with priorities (resilience.ServerLimit);
	// limit is it, set by serve where the service has one.
	ServerLimit bool
	limit       *resilience.ServerLimit
	// Failpoints are fault-test crash points: name -> probability that
	// the process kills itself (SIGKILL) there. Empty in production.
	Failpoints map[string]float64
	// FailpointMax caps the failpoints fired by all processes on one data
	// folder; 0 for no cap.
	FailpointMax int
	// Metrics turns the process's Prometheus metrics on (the default).
	Metrics bool
	// TracesPerSecond caps the new traces this process starts each second
	// when OTEL_TRACES_SAMPLER does not choose a sampler.
	TracesPerSecond float64
	// ProfileDir, when set, receives this process's CPU profile.
	ProfileDir string
	// TLS are this instance's certificate, key and CA bundle: with them
	// every internal port is mTLS and every call to another service
	// presents the certificate. ident is them loaded, set by serve.
	TLS          identity.Files
	ident        *identity.Source
	policy       *identity.Policy
	logLevelText string
	failText     string
}

// discoveryConfig is how an instance finds the others and is found.
type discoveryConfig struct {
	// RegistryURL is the registry's base URL, for the registry backend.
	RegistryURL string
	// Spec names the backend: "" or "registry" (the registry at
	// RegistryURL), dns://… or etcd://… (see openDiscovery).
	Spec   string
	parsed discoverySpec // Spec, parsed by validate
}

// validate parses Spec; every service but the registry needs one backend.
func (d *discoveryConfig) validate(service string) error {
	var err error
	if d.parsed, err = parseDiscovery(d.Spec); err != nil {
		return err
	}
	if service != services.Registry && d.parsed.kind == "registry" && d.RegistryURL == "" {
		return fmt.Errorf("%s needs the registry's URL (--registry or JUNCTION_REGISTRY_URL) or another discovery backend (--discovery)", service)
	}
	return nil
}

func (d discoveryConfig) String() string {
	s := "registry=" + d.RegistryURL
	if d.Spec != "" {
		s += " discovery=" + redactURL(d.Spec)
	}
	return s
}

// databaseConfig is a service's own database.
type databaseConfig struct {
	// DataDir holds the SQLite files (and the broker's store).
	DataDir string
	// URL is the database's URL or SQLite path; <DataDir>/<service>/<service>.db
	// when empty.
	URL string
}

// brokerConfig is the message broker: the one services connect to (URL),
// and for the embedded broker itself where it listens and how it syncs.
type brokerConfig struct {
	URL        string
	Addr       string
	SyncAlways bool
	// TLS connects to the NATS at URL with the instance's certificate
	// (the embedded broker with mTLS takes no other clients).
	TLS bool
	// ClusterAddr, when set, makes the embedded broker one node of a
	// cluster: it listens there for the other nodes, and dials Routes.
	ClusterAddr string
	Routes      []string
}

func (b brokerConfig) validate() error {
	if _, _, err := net.SplitHostPort(b.Addr); err != nil {
		return fmt.Errorf("--broker-addr (JUNCTION_BROKER_ADDR) %q: want a listen address host:port", b.Addr)
	}
	if b.ClusterAddr != "" {
		if _, _, err := net.SplitHostPort(b.ClusterAddr); err != nil {
			return fmt.Errorf("--broker-cluster-addr (JUNCTION_BROKER_CLUSTER_ADDR) %q: want a listen address host:port", b.ClusterAddr)
		}
	}
	for _, r := range b.Routes {
		if _, _, err := net.SplitHostPort(r); err != nil || b.ClusterAddr == "" {
			return fmt.Errorf("--broker-routes (JUNCTION_BROKER_ROUTES) %q: want the cluster's nodes as host:port, with --broker-cluster-addr", r)
		}
	}
	return checkBrokerURL("--broker (JUNCTION_BROKER)", b.URL)
}

func (c *serveConfig) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.InstanceID, "instance-id", "", "registry id of this instance (default <service>-<host>-<pid>)")
	envFlag(fs, "instance-id", "JUNCTION_INSTANCE_ID")
	fs.StringVar(&c.Discovery.RegistryURL, "registry", "", "registry base URL, e.g. http://127.0.0.1:7070")
	envFlag(fs, "registry", "JUNCTION_REGISTRY_URL")
	fs.StringVar(&c.Discovery.Spec, "discovery", "", "discovery backend: registry (default, at --registry), dns://[server:port]/<suffix>[?http=PORT&grpc=PORT] (Kubernetes headless services) or etcd://host:port[,host:port]/<prefix>")
	envFlag(fs, "discovery", "JUNCTION_DISCOVERY")
	fs.StringVar(&c.Database.DataDir, "data", ".junction", "data folder")
	envFlag(fs, "data", "JUNCTION_DATA")
	fs.StringVar(&c.Database.URL, "database", "", "database URL or SQLite path (default <data>/<service>/<service>.db)")
	envFlag(fs, "database", "JUNCTION_DATABASE_URL")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:0", "HTTP listen address")
	envFlag(fs, "http-addr", "JUNCTION_HTTP_ADDR")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:0", "gRPC listen address")
	envFlag(fs, "grpc-addr", "JUNCTION_GRPC_ADDR")
	fs.StringVar(&c.ProbeAddr, "probe-addr", "", "also listen here, in plaintext, for GET /healthz, /readyz and /metrics only: for probes and scrapes without a certificate (a kubelet's) while the internal ports speak mTLS")
	envFlag(fs, "probe-addr", "JUNCTION_PROBE_ADDR")
	fs.StringVar(&c.AdvertiseHTTP, "advertise-http-addr", "", "HTTP address to register instead of the listener's, e.g. a mapped port or a proxy in front")
	envFlag(fs, "advertise-http-addr", "JUNCTION_ADVERTISE_HTTP_ADDR")
	fs.StringVar(&c.Advertise, "advertise-host", "", "host to register instead of the listen host")
	envFlag(fs, "advertise-host", "JUNCTION_ADVERTISE_HOST")
	fs.StringVar(&c.logLevelText, "log-level", "info", "debug, info, warn or error")
	envFlag(fs, "log-level", "JUNCTION_LOG_LEVEL")
	fs.StringVar(&c.LogFormat, "log-format", telemetry.FormatJSON, "json, or ecs (Elastic Common Schema field names, for an ELK pipeline)")
	envFlag(fs, "log-format", "JUNCTION_LOG_FORMAT")
	c.User, c.Shipping = user.DefaultConfig, shipping.DefaultConfig
	fs.DurationVar(&c.User.TokenTTL, "token-ttl", c.User.TokenTTL, "user-service: lifetime of access tokens, 1m to 24h")
	envFlag(fs, "token-ttl", "JUNCTION_TOKEN_TTL")
	fs.StringVar(&c.Broker.Addr, "broker-addr", "127.0.0.1:0", "broker: NATS client listen address")
	envFlag(fs, "broker-addr", "JUNCTION_BROKER_ADDR")
	fs.StringVar(&c.Broker.ClusterAddr, "broker-cluster-addr", "", "broker: listen here for the other nodes of a NATS cluster (empty: a single node)")
	envFlag(fs, "broker-cluster-addr", "JUNCTION_BROKER_CLUSTER_ADDR")
	fs.StringSliceVar(&c.Broker.Routes, "broker-routes", nil, "broker: the cluster's nodes, host:port of their --broker-cluster-addr (comma-separated; this node's own may be among them)")
	envFlag(fs, "broker-routes", "JUNCTION_BROKER_ROUTES")
	fs.StringVar(&c.Broker.URL, "broker", "", "broker URL (default: the broker found in the registry): "+brokerSchemes)
	envFlag(fs, "broker", "JUNCTION_BROKER")
	fs.BoolVar(&c.Broker.TLS, "broker-tls", false, "connect to the NATS broker at --broker with this instance's certificate (--tls-cert), as the embedded broker with mTLS requires; one found in the registry is always")
	envFlag(fs, "broker-tls", "JUNCTION_BROKER_TLS")
	fs.BoolVar(&c.Broker.SyncAlways, "broker-sync-always", false, "broker: fsync every write before acknowledging it")
	envFlag(fs, "broker-sync-always", "JUNCTION_BROKER_SYNC_ALWAYS")
	c.Limits = gateway.DefaultLimits
	fs.Float64Var(&c.Limits.PerAddress, "rate-per-address", c.Limits.PerAddress, "gateway: requests/s per client address, 0 for no limit")
	envFlag(fs, "rate-per-address", "JUNCTION_RATE_PER_ADDRESS")
	fs.Float64Var(&c.Limits.PerUser, "rate-per-user", c.Limits.PerUser, "gateway: requests/s per signed-in user, 0 for no limit")
	envFlag(fs, "rate-per-user", "JUNCTION_RATE_PER_USER")
	fs.Int64Var(&c.Limits.MaxInFlight, "max-in-flight", c.Limits.MaxInFlight, "gateway: requests at once before shedding, 0 for no limit")
	envFlag(fs, "max-in-flight", "JUNCTION_MAX_IN_FLIGHT")
	fs.DurationVar(&c.Limits.RequestTimeout, "request-timeout", c.Limits.RequestTimeout, "gateway: time a request gets, retries included, 100ms to 10m; the deadline travels downstream")
	envFlag(fs, "request-timeout", "JUNCTION_REQUEST_TIMEOUT")
	fs.BoolVar(&c.Limits.ThrottleNewOrders, "throttle-new-orders", c.Limits.ThrottleNewOrders, "gateway: refuse new orders itself (503 with Retry-After) when order-service has said it has no room for them, and in the measure it has been refusing them (false: every order goes on to order-service, to measure what the throttle does)")
	envFlag(fs, "throttle-new-orders", "JUNCTION_THROTTLE_NEW_ORDERS")
	c.Live = gateway.DefaultLiveLimits
	fs.IntVar(&c.Live.PerUser, "ws-per-user", c.Live.PerUser, "gateway: WebSockets open at once per user")
	envFlag(fs, "ws-per-user", "JUNCTION_WS_PER_USER")
	fs.IntVar(&c.Live.PerAddress, "ws-per-address", c.Live.PerAddress, "gateway: WebSockets open at once per client address")
	envFlag(fs, "ws-per-address", "JUNCTION_WS_PER_ADDRESS")
	fs.IntVar(&c.Live.Total, "ws-max", c.Live.Total, "gateway: WebSockets open at once in all")
	envFlag(fs, "ws-max", "JUNCTION_WS_MAX")
	fs.StringSliceVar(&c.Live.Origins, "ws-origins", nil, "gateway: origins (host patterns such as shop.example.com or *.example.com) whose pages may open WebSockets, besides the gateway's own")
	envFlag(fs, "ws-origins", "JUNCTION_WS_ORIGINS")
	fs.DurationVar(&c.Shipping.DispatchDelay, "dispatch-delay", c.Shipping.DispatchDelay, "shipping-service: time from confirmation to dispatch")
	envFlag(fs, "dispatch-delay", "JUNCTION_DISPATCH_DELAY")
	fs.Float64Var(&c.Shipping.RefuseRate, "shipping-refuse-rate", 0, "shipping-service: share of shipments refused (0 to 1), for fault tests")
	envFlag(fs, "shipping-refuse-rate", "JUNCTION_SHIPPING_REFUSE_RATE")
	fs.Uint64Var(&c.Shipping.Seed, "seed", 0, "seed of simulated refusals")
	envFlag(fs, "seed", "JUNCTION_SEED")
	fs.BoolVar(&c.OrderAdmission, "order-admission", true, "order-service: refuse new orders (503 with Retry-After) beyond an adaptive limit that follows their time to a verdict (false: take every order, to measure what the limit does)")
	envFlag(fs, "order-admission", "JUNCTION_ORDER_ADMISSION")
	fs.BoolVar(&c.ServerLimit, "server-limit", true, "user, inventory, order, shipping, notification and deadletter services: admit requests, calls and messages through an adaptive limit that follows their time, refusing new work first (503 or UNAVAILABLE with Retry-After) when work queues (false: take all, to measure what the limit does)")
	envFlag(fs, "server-limit", "JUNCTION_SERVER_LIMIT")
	fs.StringVar(&c.failText, "failpoints", "", "fault tests only: name=probability,... where the process kills itself")
	envFlag(fs, "failpoints", "JUNCTION_FAILPOINTS")
	fs.IntVar(&c.FailpointMax, "failpoints-max", 0, "fault tests only: most failpoints all processes on one data folder fire, 0 for no cap")
	envFlag(fs, "failpoints-max", "JUNCTION_FAILPOINTS_MAX")
	fs.BoolVar(&c.Metrics, "metrics", true, "serve Prometheus metrics at GET /metrics and count what the service does (false: no metrics, to measure their cost)")
	envFlag(fs, "metrics", "JUNCTION_METRICS")
	fs.Float64Var(&c.TracesPerSecond, "traces-per-second", telemetry.DefaultTracesPerSecond, "new traces this process keeps each second, the rest not sampled (a kept trace is kept at every hop); -1 keeps every one; OTEL_TRACES_SAMPLER replaces this sampler")
	envFlag(fs, "traces-per-second", "JUNCTION_TRACES_PER_SECOND")
	fs.StringVar(&c.ProfileDir, "cpu-profile-dir", "", "write this process's CPU profile to <dir>/<instance>.cpu.pprof")
	envFlag(fs, "cpu-profile-dir", "JUNCTION_CPU_PROFILE_DIR")
	fs.BoolVar(&c.SeedDemo, "seed-demo", false, "user-service and inventory-service: create the demo accounts and catalogue when missing ('junction up' asks for them)")
	envFlag(fs, "seed-demo", "JUNCTION_SEED_DEMO")
	fs.StringVar(&c.User.DemoPassword, "demo-password", c.User.DemoPassword, "user-service: the demo accounts' password, with --seed-demo")
	envFlag(fs, "demo-password", "JUNCTION_DEMO_PASSWORD")
	fs.StringVar(&c.TLS.Cert, "tls-cert", "", "this instance's certificate (PEM, SPIFFE ID spiffe://junction.local/<service>): every internal port speaks mTLS and every call presents it; read again when the file changes")
	envFlag(fs, "tls-cert", "JUNCTION_TLS_CERT")
	fs.StringVar(&c.TLS.Key, "tls-key", "", "the private key of --tls-cert (PEM)")
	envFlag(fs, "tls-key", "JUNCTION_TLS_KEY")
	fs.StringVar(&c.TLS.CA, "tls-ca", "", "the CA bundle (PEM) that every peer's certificate must chain to")
	envFlag(fs, "tls-ca", "JUNCTION_TLS_CA")
	fs.IntVar(&c.ListenFD, "listen-fd", 0, "serve HTTP on this inherited file descriptor (set by 'junction up')")
	envFlag(fs, "listen-fd", "JUNCTION_LISTEN_FD")
	_ = fs.MarkHidden("listen-fd")
}

// brokerSchemes are the broker URLs every command accepts.
const brokerSchemes = "nats://host:port[,host:port][?replicas=N] (NATS JetStream, N copies of each stream), kafka://host:port[,host:port] (Kafka), amqp[s]://user:pass@host:port/vhost (RabbitMQ), stomp://[user:pass@]host:port (ActiveMQ, STOMP 1.2)"

// checkBrokerURL refuses a broker URL no adapter can open.
func checkBrokerURL(flag, raw string) error {
	if raw == "" {
		return nil
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || rest == "" {
		return fmt.Errorf("%s %q: want scheme://address, one of %s", flag, redactURL(raw), brokerSchemes)
	}
	switch scheme {
	case "nats":
		if _, _, err := natsReplicas(raw); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		return nil
	case "kafka", "amqp", "amqps", "stomp":
		return nil
	}
	return fmt.Errorf("%s %q: unknown scheme %q; one of %s", flag, redactURL(raw), scheme, brokerSchemes)
}

// natsReplicas splits a NATS broker URL into the servers the client dials
// and the copies of each stream that ?replicas=N asks for (1 without it):
// 3 on a three-node cluster keeps every stream through the loss of a node.
func natsReplicas(raw string) (servers string, replicas int, err error) {
	servers, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, 1, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil || len(q) != 1 || len(q["replicas"]) != 1 {
		return "", 0, fmt.Errorf("broker %q: the one parameter a nats:// URL takes is ?replicas=N", redactURL(raw))
	}
	n, err := strconv.Atoi(q.Get("replicas"))
	if err != nil || n < 1 || n > 5 {
		return "", 0, fmt.Errorf("broker %q: replicas=%s: want 1 to 5 (JetStream's most)", redactURL(raw), q.Get("replicas"))
	}
	return servers, n, nil
}

// finish fills in defaults that depend on other settings and validates.
func (c *serveConfig) finish(fs *pflag.FlagSet) error {
	if err := c.check(); err != nil {
		return asUsage(flagged(fs, err))
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%s-%d", c.Service, host, os.Getpid())
	}
	if c.Database.URL == "" {
		c.Database.URL = filepath.Join(c.Database.DataDir, c.Service, c.Service+".db")
	}
	c.Limits = c.Limits.WithBursts()
	return nil
}

// check validates the settings; each error names the flag and its
// variable and says what they accept.
func (c *serveConfig) check() error {
	if _, ok := serviceNamed(c.Service); !ok {
		return fmt.Errorf("unknown service %q; one of: %s", c.Service, strings.Join(serviceNames(nil), ", "))
	}
	if c.LogFormat != telemetry.FormatJSON && c.LogFormat != telemetry.FormatECS {
		return fmt.Errorf("--log-format (JUNCTION_LOG_FORMAT) %q: want json or ecs", c.LogFormat)
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.logLevelText)); err != nil {
		return fmt.Errorf("--log-level (JUNCTION_LOG_LEVEL) %q: want debug, info, warn or error", c.logLevelText)
	}
	if err := c.Discovery.validate(c.Service); err != nil {
		return err
	}
	if err := c.Broker.validate(); err != nil {
		return err
	}
	if c.AdvertiseHTTP != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
			return fmt.Errorf("--advertise-http-addr (JUNCTION_ADVERTISE_HTTP_ADDR) %q: want host:port", c.AdvertiseHTTP)
		}
	}
	for _, a := range []struct {
		name, value string
		optional    bool
	}{
		{"--http-addr (JUNCTION_HTTP_ADDR)", c.HTTPAddr, false}, {"--grpc-addr (JUNCTION_GRPC_ADDR)", c.GRPCAddr, false}, {"--probe-addr (JUNCTION_PROBE_ADDR)", c.ProbeAddr, true},
	} {
		if a.value == "" && a.optional {
			continue
		}
		if _, _, err := net.SplitHostPort(a.value); err != nil {
			return fmt.Errorf("%s %q: want a listen address host:port", a.name, a.value)
		}
	}
	for _, v := range []interface{ Validate() error }{c.Limits, c.Live, c.User, c.Shipping} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if err := c.TLS.Check(); err != nil {
		return fmt.Errorf("--tls-cert, --tls-key, --tls-ca (JUNCTION_TLS_CERT, _KEY, _CA): %w", err)
	}
	switch {
	case c.FailpointMax < 0:
		return fmt.Errorf("--failpoints-max (JUNCTION_FAILPOINTS_MAX) %d: must not be negative", c.FailpointMax)
	case c.ListenFD < 0:
		return fmt.Errorf("--listen-fd (JUNCTION_LISTEN_FD) %d: must not be negative", c.ListenFD)
	}
	if c.failText != "" {
		c.Failpoints = map[string]float64{}
		for _, kv := range strings.Split(c.failText, ",") {
			name, p, ok := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(p, 64)
			if !ok || err != nil || f < 0 || f > 1 || name == "" {
				return fmt.Errorf("--failpoints (JUNCTION_FAILPOINTS) %q: want name=probability (0 to 1)", kv)
			}
			c.Failpoints[name] = f
		}
	}
	return nil
}

// String prints the settings with secrets masked, for the start-up log.
func (c *serveConfig) String() string {
	s := fmt.Sprintf("service=%s instance=%s %s", c.Service, c.InstanceID, c.Discovery)
	if row, _ := serviceNamed(c.Service); row.stores {
		s += " database=" + redactURL(c.Database.URL) + " broker=" + redactURL(c.Broker.URL)
	}
	if c.Service == services.Broker {
		s += fmt.Sprintf(" nats=%s sync_always=%t", c.Broker.Addr, c.Broker.SyncAlways)
	}
	switch c.Service {
	case services.Shipping:
		s += " " + c.Shipping.String()
	case services.User:
		s += " " + c.User.String()
	}
	if len(c.Failpoints) > 0 {
		s += fmt.Sprintf(" failpoints=%v", c.Failpoints)
	}
	if c.TLS.Set() {
		s += " mtls=" + c.TLS.Cert
	} else {
		s += " mtls=off"
	}
	return s
}

// redactURL hides the password of a URL (a broker's, a database's, a
// discovery backend's) for logs and errors; a plain path is left alone.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
