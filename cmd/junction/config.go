package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/junction-go/junction/internal/gateway"
	"github.com/junction-go/junction/sqldb"
)

// serveConfig is what `junction serve` reads, once, from flags and the
// JUNCTION_* environment (a flag wins over its variable).
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
	// ProfileDir, when set, receives this process's CPU profile.
	ProfileDir   string
	logLevelText string
	failText     string
}

// services are the names `junction serve` accepts.
var services = []string{"registry", "broker", "user-service", "inventory-service", "order-service", "payment-service", "payment-provider", "shipping-service", "notification-service", "deadletter-service", "gateway"}

func (c *serveConfig) flags(fs *pflag.FlagSet, getenv func(string) string) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.InstanceID, "instance-id", env("JUNCTION_INSTANCE_ID", ""), "registry id of this instance (default <service>-<host>-<pid>) [JUNCTION_INSTANCE_ID]")
	fs.StringVar(&c.RegistryURL, "registry", env("JUNCTION_REGISTRY_URL", ""), "registry base URL, e.g. http://127.0.0.1:7070 [JUNCTION_REGISTRY_URL]")
	fs.StringVar(&c.Discovery, "discovery", env("JUNCTION_DISCOVERY", ""), "discovery backend: registry (default, at --registry), dns://[server:port]/<suffix>[?http=PORT&grpc=PORT] (Kubernetes headless services) or etcd://host:port[,host:port]/<prefix> [JUNCTION_DISCOVERY]")
	fs.StringVar(&c.DataDir, "data", env("JUNCTION_DATA", ".junction"), "data folder [JUNCTION_DATA]")
	fs.StringVar(&c.DatabaseURL, "database", env("JUNCTION_DATABASE_URL", ""), "database URL or SQLite path (default <data>/<service>/<service>.db) [JUNCTION_DATABASE_URL]")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("JUNCTION_HTTP_ADDR", "127.0.0.1:0"), "HTTP listen address [JUNCTION_HTTP_ADDR]")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", env("JUNCTION_GRPC_ADDR", "127.0.0.1:0"), "gRPC listen address [JUNCTION_GRPC_ADDR]")
	fs.StringVar(&c.AdvertiseHTTP, "advertise-http-addr", env("JUNCTION_ADVERTISE_HTTP_ADDR", ""), "HTTP address to register instead of the listener's, e.g. a mapped port or a proxy in front [JUNCTION_ADVERTISE_HTTP_ADDR]")
	fs.StringVar(&c.Advertise, "advertise-host", env("JUNCTION_ADVERTISE_HOST", ""), "host to register instead of the listen host [JUNCTION_ADVERTISE_HOST]")
	fs.StringVar(&c.logLevelText, "log-level", env("JUNCTION_LOG_LEVEL", "info"), "debug, info, warn or error [JUNCTION_LOG_LEVEL]")
	fs.DurationVar(&c.TokenTTL, "token-ttl", envDuration(getenv, "JUNCTION_TOKEN_TTL", 15*time.Minute), "lifetime of access tokens (user-service) [JUNCTION_TOKEN_TTL]")
	fs.StringVar(&c.BrokerAddr, "broker-addr", env("JUNCTION_BROKER_ADDR", "127.0.0.1:0"), "NATS client listen address (broker) [JUNCTION_BROKER_ADDR]")
	fs.StringVar(&c.BrokerURL, "broker", env("JUNCTION_BROKER", ""), "broker URL, e.g. nats://127.0.0.1:4222 (default: the broker found in the registry) [JUNCTION_BROKER]")
	fs.BoolVar(&c.BrokerSync, "broker-sync-always", env("JUNCTION_BROKER_SYNC_ALWAYS", "false") == "true", "fsync every broker write (broker) [JUNCTION_BROKER_SYNC_ALWAYS]")
	c.Limits = gateway.DefaultLimits
	fs.Float64Var(&c.Limits.PerAddress, "rate-per-address", envFloat(getenv, "JUNCTION_RATE_PER_ADDRESS", c.Limits.PerAddress), "gateway: requests/s per client address, 0 for no limit [JUNCTION_RATE_PER_ADDRESS]")
	fs.Float64Var(&c.Limits.PerUser, "rate-per-user", envFloat(getenv, "JUNCTION_RATE_PER_USER", c.Limits.PerUser), "gateway: requests/s per signed-in user, 0 for no limit [JUNCTION_RATE_PER_USER]")
	fs.Int64Var(&c.Limits.MaxInFlight, "max-in-flight", int64(envFloat(getenv, "JUNCTION_MAX_IN_FLIGHT", float64(c.Limits.MaxInFlight))), "gateway: requests at once before shedding, 0 for no limit [JUNCTION_MAX_IN_FLIGHT]")
	fs.DurationVar(&c.Limits.RequestTimeout, "request-timeout", envDuration(getenv, "JUNCTION_REQUEST_TIMEOUT", gateway.UpstreamTimeout), "gateway: time a request gets, retries included; the deadline travels downstream [JUNCTION_REQUEST_TIMEOUT]")
	fs.DurationVar(&c.DispatchDelay, "dispatch-delay", envDuration(getenv, "JUNCTION_DISPATCH_DELAY", 2*time.Second), "shipping-service: time from confirmation to dispatch [JUNCTION_DISPATCH_DELAY]")
	fs.Float64Var(&c.RefuseRate, "shipping-refuse-rate", envFloat(getenv, "JUNCTION_SHIPPING_REFUSE_RATE", 0), "shipping-service: share of shipments refused, for fault tests [JUNCTION_SHIPPING_REFUSE_RATE]")
	seed, _ := strconv.ParseUint(getenv("JUNCTION_SEED"), 10, 64)
	fs.Uint64Var(&c.Seed, "seed", seed, "seed of simulated refusals [JUNCTION_SEED]")
	fs.StringVar(&c.failText, "failpoints", env("JUNCTION_FAILPOINTS", ""), "fault tests only: name=probability,... where the process kills itself [JUNCTION_FAILPOINTS]")
	c.FailpointMax, _ = strconv.Atoi(getenv("JUNCTION_FAILPOINTS_MAX"))
	fs.StringVar(&c.ProfileDir, "cpu-profile-dir", env("JUNCTION_CPU_PROFILE_DIR", ""), "write this process's CPU profile to <dir>/<instance>.cpu.pprof [JUNCTION_CPU_PROFILE_DIR]")
	c.ListenFD, _ = strconv.Atoi(getenv("JUNCTION_LISTEN_FD"))
}

func envFloat(getenv func(string) string, key string, def float64) float64 {
	if f, err := strconv.ParseFloat(getenv(key), 64); err == nil {
		return f
	}
	return def
}

func envDuration(getenv func(string) string, key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(getenv(key)); err == nil {
		return d
	}
	return def
}

// finish fills in defaults that depend on other settings and validates.
func (c *serveConfig) finish() error {
	known := false
	for _, s := range services {
		known = known || s == c.Service
	}
	if !known {
		return fmt.Errorf("unknown service %q; one of: %s", c.Service, strings.Join(services, ", "))
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.logLevelText)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	var err error
	if c.discovery, err = parseDiscovery(c.Discovery); err != nil {
		return err
	}
	if c.Service != "registry" && c.discovery.kind == "registry" && c.RegistryURL == "" {
		return fmt.Errorf("%s needs the registry's URL (--registry or JUNCTION_REGISTRY_URL) or another discovery backend (--discovery)", c.Service)
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%s-%d", c.Service, host, os.Getpid())
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(c.DataDir, c.Service, c.Service+".db")
	}
	if c.AdvertiseHTTP != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
			return fmt.Errorf("advertised HTTP address %q: %w", c.AdvertiseHTTP, err)
		}
	}
	for _, a := range []string{c.HTTPAddr, c.GRPCAddr, c.BrokerAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	if c.Limits.PerAddress < 0 || c.Limits.PerUser < 0 || c.Limits.MaxInFlight < 0 {
		return fmt.Errorf("gateway limits must not be negative")
	}
	if c.Limits.RequestTimeout < 100*time.Millisecond || c.Limits.RequestTimeout > 10*time.Minute {
		return fmt.Errorf("request timeout %v must be between 100ms and 10m", c.Limits.RequestTimeout)
	}
	// Bursts follow the rates: a second's worth.
	c.Limits.AddressBurst = max(1, int(c.Limits.PerAddress))
	c.Limits.UserBurst = max(1, int(c.Limits.PerUser))
	if c.RefuseRate < 0 || c.RefuseRate > 1 {
		return fmt.Errorf("shipping refuse rate %v must be between 0 and 1", c.RefuseRate)
	}
	if c.DispatchDelay < 0 {
		return fmt.Errorf("dispatch delay must not be negative")
	}
	if c.failText != "" {
		c.Failpoints = map[string]float64{}
		for _, kv := range strings.Split(c.failText, ",") {
			name, p, ok := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(p, 64)
			if !ok || err != nil || f < 0 || f > 1 || name == "" {
				return fmt.Errorf("failpoint %q: want name=probability (0 to 1)", kv)
			}
			c.Failpoints[name] = f
		}
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return fmt.Errorf("token ttl %v must be between 1m and 24h", c.TokenTTL)
	}
	return nil
}

// String prints the settings with secrets masked, for the start-up log.
func (c *serveConfig) String() string {
	s := fmt.Sprintf("service=%s instance=%s registry=%s", c.Service, c.InstanceID, c.RegistryURL)
	if c.Discovery != "" {
		s += " discovery=" + sqldb.Redact(c.Discovery)
	}
	switch c.Service {
	case "user-service", "inventory-service", "order-service", "payment-service", "shipping-service", "notification-service", "deadletter-service":
		s += " database=" + sqldb.Redact(c.DatabaseURL) + " broker=" + sqldb.Redact(c.BrokerURL)
	case "broker":
		s += fmt.Sprintf(" nats=%s sync_always=%t", c.BrokerAddr, c.BrokerSync)
	}
	if c.Service == "shipping-service" {
		s += fmt.Sprintf(" dispatch_delay=%v refuse_rate=%v", c.DispatchDelay, c.RefuseRate)
	}
	if len(c.Failpoints) > 0 {
		s += fmt.Sprintf(" failpoints=%v", c.Failpoints)
	}
	return s
}
