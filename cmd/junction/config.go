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
	"time"

	"github.com/spf13/pflag"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/internal/gateway"
)

// serveConfig is what `junction serve` reads, once, from flags and the
// JUNCTION_* environment (a flag wins over its variable; see envFlag).
type serveConfig struct {
	Service     string
	InstanceID  string
	RegistryURL string
	// Discovery names the discovery backend: "" or "registry" (the
	// registry at RegistryURL), dns://… or etcd://… (see openDiscovery).
	Discovery string
	discovery discoverySpec // Discovery parsed
	// disc is the opened backend, set by serve.
	disc        *discoveryBackend
	DataDir     string
	DatabaseURL string
	HTTPAddr    string
	GRPCAddr    string
	Advertise   string
	// AdvertiseHTTP replaces the whole registered HTTP address.
	AdvertiseHTTP string
	ListenFD      int
	LogLevel      slog.Level
	TokenTTL      time.Duration
	BrokerAddr    string
	BrokerURL     string
	Limits        gateway.Limits
	BrokerSync    bool
	// DispatchDelay is how long after confirmation shipping-service
	// dispatches a shipment.
	DispatchDelay time.Duration
	// RefuseRate is the share of shipments shipping-service refuses, by
	// order id and Seed (for tests of compensation).
	RefuseRate float64
	Seed       uint64
	// Failpoints are fault-test crash points: name -> probability that
	// the process kills itself (SIGKILL) there. Empty in production.
	Failpoints map[string]float64
	// FailpointMax caps the failpoints fired by all processes on one data
	// folder; 0 for no cap.
	FailpointMax int
	// SeedDemo creates the demo accounts (user-service, with DemoPassword)
	// and the demo catalogue (inventory-service) when they are missing.
	SeedDemo     bool
	DemoPassword string
	// ProfileDir, when set, receives this process's CPU profile.
	ProfileDir   string
	logLevelText string
	failText     string
}

func (c *serveConfig) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.InstanceID, "instance-id", "", "registry id of this instance (default <service>-<host>-<pid>)")
	envFlag(fs, "instance-id", "JUNCTION_INSTANCE_ID")
	fs.StringVar(&c.RegistryURL, "registry", "", "registry base URL, e.g. http://127.0.0.1:7070")
	envFlag(fs, "registry", "JUNCTION_REGISTRY_URL")
	fs.StringVar(&c.Discovery, "discovery", "", "discovery backend: registry (default, at --registry), dns://[server:port]/<suffix>[?http=PORT&grpc=PORT] (Kubernetes headless services) or etcd://host:port[,host:port]/<prefix>")
	envFlag(fs, "discovery", "JUNCTION_DISCOVERY")
	fs.StringVar(&c.DataDir, "data", ".junction", "data folder")
	envFlag(fs, "data", "JUNCTION_DATA")
	fs.StringVar(&c.DatabaseURL, "database", "", "database URL or SQLite path (default <data>/<service>/<service>.db)")
	envFlag(fs, "database", "JUNCTION_DATABASE_URL")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:0", "HTTP listen address")
	envFlag(fs, "http-addr", "JUNCTION_HTTP_ADDR")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:0", "gRPC listen address")
	envFlag(fs, "grpc-addr", "JUNCTION_GRPC_ADDR")
	fs.StringVar(&c.AdvertiseHTTP, "advertise-http-addr", "", "HTTP address to register instead of the listener's, e.g. a mapped port or a proxy in front")
	envFlag(fs, "advertise-http-addr", "JUNCTION_ADVERTISE_HTTP_ADDR")
	fs.StringVar(&c.Advertise, "advertise-host", "", "host to register instead of the listen host")
	envFlag(fs, "advertise-host", "JUNCTION_ADVERTISE_HOST")
	fs.StringVar(&c.logLevelText, "log-level", "info", "debug, info, warn or error")
	envFlag(fs, "log-level", "JUNCTION_LOG_LEVEL")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 15*time.Minute, "user-service: lifetime of access tokens, 1m to 24h")
	envFlag(fs, "token-ttl", "JUNCTION_TOKEN_TTL")
	fs.StringVar(&c.BrokerAddr, "broker-addr", "127.0.0.1:0", "broker: NATS client listen address")
	envFlag(fs, "broker-addr", "JUNCTION_BROKER_ADDR")
	fs.StringVar(&c.BrokerURL, "broker", "", "broker URL (default: the broker found in the registry): "+brokerSchemes)
	envFlag(fs, "broker", "JUNCTION_BROKER")
	fs.BoolVar(&c.BrokerSync, "broker-sync-always", false, "broker: fsync every write before acknowledging it")
	envFlag(fs, "broker-sync-always", "JUNCTION_BROKER_SYNC_ALWAYS")
	c.Limits = gateway.DefaultLimits
	fs.Float64Var(&c.Limits.PerAddress, "rate-per-address", c.Limits.PerAddress, "gateway: requests/s per client address, 0 for no limit")
	envFlag(fs, "rate-per-address", "JUNCTION_RATE_PER_ADDRESS")
	fs.Float64Var(&c.Limits.PerUser, "rate-per-user", c.Limits.PerUser, "gateway: requests/s per signed-in user, 0 for no limit")
	envFlag(fs, "rate-per-user", "JUNCTION_RATE_PER_USER")
	fs.Int64Var(&c.Limits.MaxInFlight, "max-in-flight", c.Limits.MaxInFlight, "gateway: requests at once before shedding, 0 for no limit")
	envFlag(fs, "max-in-flight", "JUNCTION_MAX_IN_FLIGHT")
	fs.DurationVar(&c.Limits.RequestTimeout, "request-timeout", gateway.UpstreamTimeout, "gateway: time a request gets, retries included, 100ms to 10m; the deadline travels downstream")
	envFlag(fs, "request-timeout", "JUNCTION_REQUEST_TIMEOUT")
	fs.DurationVar(&c.DispatchDelay, "dispatch-delay", 2*time.Second, "shipping-service: time from confirmation to dispatch")
	envFlag(fs, "dispatch-delay", "JUNCTION_DISPATCH_DELAY")
	fs.Float64Var(&c.RefuseRate, "shipping-refuse-rate", 0, "shipping-service: share of shipments refused (0 to 1), for fault tests")
	envFlag(fs, "shipping-refuse-rate", "JUNCTION_SHIPPING_REFUSE_RATE")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of simulated refusals")
	envFlag(fs, "seed", "JUNCTION_SEED")
	fs.StringVar(&c.failText, "failpoints", "", "fault tests only: name=probability,... where the process kills itself")
	envFlag(fs, "failpoints", "JUNCTION_FAILPOINTS")
	fs.IntVar(&c.FailpointMax, "failpoints-max", 0, "fault tests only: most failpoints all processes on one data folder fire, 0 for no cap")
	envFlag(fs, "failpoints-max", "JUNCTION_FAILPOINTS_MAX")
	fs.StringVar(&c.ProfileDir, "cpu-profile-dir", "", "write this process's CPU profile to <dir>/<instance>.cpu.pprof")
	envFlag(fs, "cpu-profile-dir", "JUNCTION_CPU_PROFILE_DIR")
	fs.BoolVar(&c.SeedDemo, "seed-demo", false, "user-service and inventory-service: create the demo accounts and catalogue when missing ('junction up' asks for them)")
	envFlag(fs, "seed-demo", "JUNCTION_SEED_DEMO")
	fs.StringVar(&c.DemoPassword, "demo-password", "junction", "user-service: the demo accounts' password, with --seed-demo")
	envFlag(fs, "demo-password", "JUNCTION_DEMO_PASSWORD")
	fs.IntVar(&c.ListenFD, "listen-fd", 0, "serve HTTP on this inherited file descriptor (set by 'junction up')")
	envFlag(fs, "listen-fd", "JUNCTION_LISTEN_FD")
	_ = fs.MarkHidden("listen-fd")
}

// brokerSchemes are the broker URLs every command accepts.
const brokerSchemes = "nats://host:port[,host:port] (NATS JetStream), kafka://host:port[,host:port] (Kafka), amqp[s]://user:pass@host:port/vhost (RabbitMQ), stomp://[user:pass@]host:port (ActiveMQ, STOMP 1.2)"

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
	case "nats", "kafka", "amqp", "amqps", "stomp":
		return nil
	}
	return fmt.Errorf("%s %q: unknown scheme %q; one of %s", flag, redactURL(raw), scheme, brokerSchemes)
}

// finish fills in defaults that depend on other settings and validates.
func (c *serveConfig) finish() error {
	if err := c.check(); err != nil {
		return asUsage(err)
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%s-%d", c.Service, host, os.Getpid())
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(c.DataDir, c.Service, c.Service+".db")
	}
	// Bursts follow the rates: a second's worth.
	c.Limits.AddressBurst = max(1, int(c.Limits.PerAddress))
	c.Limits.UserBurst = max(1, int(c.Limits.PerUser))
	return nil
}

// check validates the settings; each error names the flag and its
// variable and says what they accept.
func (c *serveConfig) check() error {
	if _, ok := serviceNamed(c.Service); !ok {
		return fmt.Errorf("unknown service %q; one of: %s", c.Service, strings.Join(serviceNames(nil), ", "))
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.logLevelText)); err != nil {
		return fmt.Errorf("--log-level (JUNCTION_LOG_LEVEL) %q: want debug, info, warn or error", c.logLevelText)
	}
	var err error
	if c.discovery, err = parseDiscovery(c.Discovery); err != nil {
		return err
	}
	if c.Service != "registry" && c.discovery.kind == "registry" && c.RegistryURL == "" {
		return fmt.Errorf("%s needs the registry's URL (--registry or JUNCTION_REGISTRY_URL) or another discovery backend (--discovery)", c.Service)
	}
	if err := checkBrokerURL("--broker (JUNCTION_BROKER)", c.BrokerURL); err != nil {
		return err
	}
	if c.AdvertiseHTTP != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
			return fmt.Errorf("--advertise-http-addr (JUNCTION_ADVERTISE_HTTP_ADDR) %q: want host:port", c.AdvertiseHTTP)
		}
	}
	for _, a := range []struct{ name, value string }{
		{"--http-addr (JUNCTION_HTTP_ADDR)", c.HTTPAddr}, {"--grpc-addr (JUNCTION_GRPC_ADDR)", c.GRPCAddr}, {"--broker-addr (JUNCTION_BROKER_ADDR)", c.BrokerAddr},
	} {
		if _, _, err := net.SplitHostPort(a.value); err != nil {
			return fmt.Errorf("%s %q: want a listen address host:port", a.name, a.value)
		}
	}
	switch {
	case c.Limits.PerAddress < 0:
		return fmt.Errorf("--rate-per-address (JUNCTION_RATE_PER_ADDRESS) %v: must not be negative", c.Limits.PerAddress)
	case c.Limits.PerUser < 0:
		return fmt.Errorf("--rate-per-user (JUNCTION_RATE_PER_USER) %v: must not be negative", c.Limits.PerUser)
	case c.Limits.MaxInFlight < 0:
		return fmt.Errorf("--max-in-flight (JUNCTION_MAX_IN_FLIGHT) %v: must not be negative", c.Limits.MaxInFlight)
	case c.Limits.RequestTimeout < 100*time.Millisecond || c.Limits.RequestTimeout > 10*time.Minute:
		return fmt.Errorf("--request-timeout (JUNCTION_REQUEST_TIMEOUT) %v: must be between 100ms and 10m", c.Limits.RequestTimeout)
	case c.RefuseRate < 0 || c.RefuseRate > 1:
		return fmt.Errorf("--shipping-refuse-rate (JUNCTION_SHIPPING_REFUSE_RATE) %v: must be between 0 and 1", c.RefuseRate)
	case c.DispatchDelay < 0:
		return fmt.Errorf("--dispatch-delay (JUNCTION_DISPATCH_DELAY) %v: must not be negative", c.DispatchDelay)
	case c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour:
		return fmt.Errorf("--token-ttl (JUNCTION_TOKEN_TTL) %v: must be between 1m and 24h", c.TokenTTL)
	case c.FailpointMax < 0:
		return fmt.Errorf("--failpoints-max (JUNCTION_FAILPOINTS_MAX) %d: must not be negative", c.FailpointMax)
	case c.ListenFD < 0:
		return fmt.Errorf("--listen-fd (JUNCTION_LISTEN_FD) %d: must not be negative", c.ListenFD)
	}
	if n := len(c.DemoPassword); c.SeedDemo && (n < 8 || n > 72) {
		return fmt.Errorf("--demo-password (JUNCTION_DEMO_PASSWORD): must be 8 to 72 bytes")
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
	s := fmt.Sprintf("service=%s instance=%s registry=%s", c.Service, c.InstanceID, c.RegistryURL)
	if c.Discovery != "" {
		s += " discovery=" + redactURL(c.Discovery)
	}
	if row, _ := serviceNamed(c.Service); row.stores {
		s += " database=" + redactURL(c.DatabaseURL) + " broker=" + redactURL(c.BrokerURL)
	}
	if c.Service == services.Broker {
		s += fmt.Sprintf(" nats=%s sync_always=%t", c.BrokerAddr, c.BrokerSync)
	}
	if c.Service == services.Shipping {
		s += fmt.Sprintf(" dispatch_delay=%v refuse_rate=%v", c.DispatchDelay, c.RefuseRate)
	}
	if len(c.Failpoints) > 0 {
		s += fmt.Sprintf(" failpoints=%v", c.Failpoints)
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
