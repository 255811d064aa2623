package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/etcddisc"
	"github.com/junction-go/junction/discovery/etcddisc/etcdtest"
	"github.com/junction-go/junction/telemetry/telemetrytest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestRunRejectsBadInvocations: every invocation the program cannot use is
// an error that says what is wrong (naming the flag or variable), and a
// usage error: exit status 2, before anything starts.
func TestRunRejectsBadInvocations(t *testing.T) {
	reg := map[string]string{"JUNCTION_REGISTRY_URL": "http://127.0.0.1:1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range reg {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"nonsense"}, nil, "unknown command"},
		{[]string{"up", "--nonsense"}, nil, "unknown flag: --nonsense"},
		{[]string{"up", "extra"}, nil, "unknown command"},
		{[]string{"serve"}, nil, "accepts 1 arg"},
		{[]string{"serve", "kitchen"}, nil, `unknown service "kitchen"`},
		{[]string{"serve", "order-service"}, nil, "needs the registry's URL"},
		{[]string{"serve", "order-service", "--registry", "http://127.0.0.1:1", "--http-addr", "nope"}, nil, "--http-addr (JUNCTION_HTTP_ADDR)"},
		{[]string{"serve", "gateway"}, with("JUNCTION_LOG_LEVEL", "loud"), "--log-level (JUNCTION_LOG_LEVEL)"},
		{[]string{"serve", "user-service"}, with("JUNCTION_TOKEN_TTL", "15"), `JUNCTION_TOKEN_TTL="15": want a duration`},
		{[]string{"serve", "user-service", "--token-ttl", "15"}, reg, `invalid argument "15" for "--token-ttl"`},
		{[]string{"serve", "user-service"}, with("JUNCTION_TOKEN_TTL", "30s"), "--token-ttl (JUNCTION_TOKEN_TTL) 30s: must be between 1m and 24h"},
		{[]string{"serve", "broker"}, with("JUNCTION_BROKER_SYNC_ALWAYS", "yes"), `JUNCTION_BROKER_SYNC_ALWAYS="yes": want true or false`},
		{[]string{"serve", "shipping-service"}, with("JUNCTION_SEED", "x"), `JUNCTION_SEED="x": want a whole number`},
		{[]string{"serve", "gateway"}, with("JUNCTION_MAX_IN_FLIGHT", "lots"), `JUNCTION_MAX_IN_FLIGHT="lots"`},
		{[]string{"serve", "order-service"}, with("JUNCTION_BROKER", "mqtt://x:1883"), `unknown scheme "mqtt"`},
		{[]string{"serve", "gateway", "--discovery", "zookeeper://x"}, nil, `unknown scheme "zookeeper"`},
		{[]string{"serve", "gateway", "--discovery", "dns://"}, nil, "name the suffix"},
		{[]string{"serve", "gateway", "--discovery", "dns:///shop.svc?http=x"}, nil, "want 1-65535"},
		{[]string{"serve", "gateway", "--discovery", "etcd:///prefix"}, nil, "name the endpoints"},
		{[]string{"up", "--replicas", "order-service"}, nil, "want service=N"},
		{[]string{"up"}, map[string]string{"JUNCTION_REPLICAS": "order-service=2,registry=2"}, "registry cannot be scaled"},
		{[]string{"up", "--replicas", "registry=2"}, nil, "cannot be scaled"},
		{[]string{"up", "--replicas", "gateway=100"}, nil, "want service=N"},
		{[]string{"up", "--port", "70000"}, nil, "not a port"},
		{[]string{"up"}, map[string]string{"JUNCTION_PORT": "http"}, `JUNCTION_PORT="http": want a whole number`},
		{[]string{"up"}, map[string]string{"JUNCTION_FAULT_LINKS": "maybe"}, `JUNCTION_FAULT_LINKS="maybe"`},
		{[]string{"up", "--broker", "redis://x"}, nil, `unknown scheme "redis"`},
		{[]string{"up", "--log-level", "loud"}, nil, "--log-level (JUNCTION_LOG_LEVEL)"},
		{[]string{"bench", "kitchen"}, nil, "unknown scenario"},
		{[]string{"bench", "read", "--rate", "0"}, nil, "--rate must be"},
		{[]string{"bench", "read", "--find-max", "--find-max-tries", "0"}, nil, "--find-max-tries must be"},
		{[]string{"bench", "grpc"}, nil, "--registry is needed"},
		{[]string{"deadletters", "show", "x"}, nil, "want a positive number"},
		{[]string{"deadletters", "show"}, nil, "accepts 1 arg"},
		{[]string{"chaos", "link", "order-service-1"}, nil, "--registry is needed"},
		{[]string{"chaos", "provider"}, nil, "--registry is needed"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, env(tt.env), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			continue
		}
		var stderr bytes.Buffer
		if code := exitCode(err, tt.args, &stderr); code != 2 || !strings.Contains(stderr.String(), "--help' for usage") {
			t.Errorf("run(%q): exit %d, stderr %q; want 2 and a pointer to --help", tt.args, code, stderr.String())
		}
	}
}

// TestAVariableSetsItsFlag: a variable is used when its flag is not given,
// and the flag wins when both are.
func TestAVariableSetsItsFlag(t *testing.T) {
	var cfg serveConfig
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	cfg.flags(cmd.Flags())
	if err := cmd.Flags().Parse([]string{"--dispatch-delay", "3s"}); err != nil {
		t.Fatal(err)
	}
	err := applyEnv(cmd.Flags(), env(map[string]string{"JUNCTION_TOKEN_TTL": "2h", "JUNCTION_DISPATCH_DELAY": "9s", "JUNCTION_BROKER_SYNC_ALWAYS": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User.TokenTTL != 2*time.Hour || cfg.Shipping.DispatchDelay != 3*time.Second || !cfg.Broker.SyncAlways {
		t.Errorf("token ttl %v, dispatch delay %v, sync %v; want 2h from its variable, 3s from the flag over its variable, true from 1", cfg.User.TokenTTL, cfg.Shipping.DispatchDelay, cfg.Broker.SyncAlways)
	}
}

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// TestConfigurationDoc: docs/configuration.md is the table generated from
// the flags themselves.
func TestConfigurationDoc(t *testing.T) {
	root := newRoot(env(nil), io.Discard, io.Discard)
	want := configurationDoc(root)
	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("docs/configuration.md is out of date; run go test ./cmd/junction -run TestConfigurationDoc -update (-want +got):\n%s", diff)
	}
	for _, key := range []string{"JUNCTION_TOKEN_TTL", "JUNCTION_PORT", "JUNCTION_REPLICAS", "JUNCTION_BROKER", "JUNCTION_GATEWAY"} {
		if !strings.Contains(want, key) {
			t.Errorf("the table lacks %s", key)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, env(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "junction ") {
		t.Errorf("version printed %q", out.String())
	}
}

// TestServeRegistryAndUsers runs two services in this process the way
// `junction serve` does, on free ports, and stops them by cancelling.
func TestServeRegistryAndUsers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	regDone := make(chan error, 1)
	regLogs := &telemetrytest.Buffer{}
	// The registry needs a known port for the inventory to find it: pick
	// one by serving on :0 and reading the log.
	go func() {
		regDone <- run(ctx, []string{"serve", "registry", "--http-addr", "127.0.0.1:0"}, env(nil), regLogs, regLogs)
	}()
	var regURL string
	waitFor(t, func() bool {
		for _, line := range strings.Split(regLogs.String(), "\n") {
			if strings.Contains(line, `"msg":"listening"`) {
				i := strings.Index(line, `"addr":"`)
				regURL = "http://" + strings.SplitN(line[i+8:], `"`, 2)[0]
				return true
			}
		}
		return false
	})

	invLogs := &telemetrytest.Buffer{}
	invDone := make(chan error, 1)
	go func() {
		invDone <- run(ctx, []string{"serve", "user-service"}, env(map[string]string{
			"JUNCTION_REGISTRY_URL": regURL,
			"JUNCTION_DATA":         t.TempDir(),
			"JUNCTION_INSTANCE_ID":  "user-test",
		}), invLogs, invLogs)
	}()
	reg := discovery.NewClient(regURL, nil)
	var addr string
	waitFor(t, func() bool {
		v, err := reg.Lookup(ctx, "user-service")
		if err != nil || len(v.Instances) != 1 {
			return false
		}
		addr = v.Instances[0].Endpoints["http"]
		return v.Instances[0].ID == "user-test"
	})
	resp, err := http.Get("http://" + addr + "/.well-known/jwks.json")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /.well-known/jwks.json = %v, %v", resp, err)
	}
	resp.Body.Close()

	cancel()
	for name, done := range map[string]chan error{"user-service": invDone, "registry": regDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: run = %v, want nil after a requested stop", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not stop", name)
		}
	}
	if !strings.Contains(invLogs.String(), `"msg":"stopped"`) {
		t.Errorf("user-service logs lack a clean stop:\n%s", invLogs.String())
	}
}

// TestServeWithEtcdDiscovery: the same binary registers in etcd instead of
// the registry when told to, and leaves it when stopped.
func TestServeWithEtcdDiscovery(t *testing.T) {
	endpoint, cli := etcdtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &telemetrytest.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "user-service", "--discovery", "etcd://" + endpoint + "/shop/"}, env(map[string]string{
			"JUNCTION_DATA":        t.TempDir(),
			"JUNCTION_INSTANCE_ID": "user-etcd",
		}), logs, logs)
	}()
	src := etcddisc.New(cli, etcddisc.Config{Prefix: "/shop/"})
	var addr string
	waitFor(t, func() bool {
		v, err := src.Lookup(ctx, "user-service")
		if err != nil || len(v.Instances) != 1 || v.Instances[0].ID != "user-etcd" {
			return false
		}
		addr = v.Instances[0].Endpoints["http"]
		return true
	})
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz of the instance found in etcd = %v, %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v after a requested stop\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("user-service did not stop")
	}
	v, err := src.Lookup(context.Background(), "user-service")
	if err != nil || len(v.Instances) != 0 {
		t.Errorf("etcd after the stop = %+v, %v; want the instance gone", v, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServiceWaitsForALateBroker: a service started before its broker
// waits for it, says so at info, and serves once the broker is up, instead
// of exiting.
func TestServiceWaitsForALateBroker(t *testing.T) {
	addr, err := fixedPort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	common := map[string]string{"JUNCTION_DISCOVERY": "dns://127.0.0.1:1/shop.test", "JUNCTION_BROKER": "nats://" + addr}
	svcEnv := map[string]string{"JUNCTION_DATA": t.TempDir(), "JUNCTION_INSTANCE_ID": "notification-test"}
	brokerEnv := map[string]string{"JUNCTION_DATA": t.TempDir(), "JUNCTION_INSTANCE_ID": "broker-test", "JUNCTION_BROKER_ADDR": addr}
	for k, v := range common {
		svcEnv[k], brokerEnv[k] = v, v
	}
	svcLogs := &telemetrytest.Buffer{}
	svcDone := make(chan error, 1)
	go func() { svcDone <- run(ctx, []string{"serve", "notification-service"}, env(svcEnv), svcLogs, svcLogs) }()
	waitFor(t, func() bool { return strings.Contains(svcLogs.String(), `"msg":"waiting for the broker"`) })

	brokerLogs := &telemetrytest.Buffer{}
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- run(ctx, []string{"serve", "broker"}, env(brokerEnv), brokerLogs, brokerLogs) }()
	waitFor(t, func() bool { return strings.Contains(svcLogs.String(), `"msg":"listening"`) })
	select {
	case err := <-svcDone:
		t.Fatalf("notification-service exited: %v\n%s", err, svcLogs.String())
	default:
	}
	cancel()
	for name, done := range map[string]chan error{"notification-service": svcDone, "broker": brokerDone} {
		if err := <-done; err != nil {
			t.Errorf("%s: run = %v, want nil after a requested stop", name, err)
		}
	}
	for _, line := range strings.Split(svcLogs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("notification-service logged: %s", line)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:secret@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"postgres://app:pw@db:5432/shop?sslmode=disable", "postgres://app:xxxxx@db:5432/shop?sslmode=disable"},
		{"kafka://a:9092,b:9092", "kafka://a:9092,b:9092"},
		{"stomp://user@mq:61613", "stomp://user@mq:61613"},
		{"/var/lib/junction/order-service.db", "/var/lib/junction/order-service.db"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
