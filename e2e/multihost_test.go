package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus/natsbus"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/internal/inventory"
	inventorystore "github.com/junction-go/junction/internal/inventory/store"
	"github.com/junction-go/junction/internal/paymentsim"
	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/postgres" // the services' databases here
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// netlab is a network of hosts on this machine: one network namespace per
// host, each with a veth on one bridge in the test's own namespace, where
// the infrastructure (PostgreSQL, etcd) is reached at the bridge's address.
type netlab struct {
	t      *testing.T
	id     string // suffix of every name, so runs never collide
	prefix string // the /24, "10.77.N."
	bridge string
	hosts  []*host
}

type host struct {
	name, ns, ip, link string // link: the veth's end on the bridge
}

func newNetlab(t *testing.T) *netlab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatal("the multi-host test needs root and iproute2 (JUNCTION_REQUIRE_ALL=1)")
		}
		t.Skip("the multi-host test needs root and iproute2 (network namespaces)")
	}
	n := rand.IntN(200) + 20
	l := &netlab{t: t, id: fmt.Sprintf("%04x", rand.IntN(1<<16)), prefix: fmt.Sprintf("10.77.%d.", n)}
	l.bridge = "jxb" + l.id
	t.Cleanup(l.close)
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("addr", "add", l.prefix+"1/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	return l
}

func (l *netlab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// gateway is the bridge's address: the infrastructure host.
func (l *netlab) gateway() string { return l.prefix + "1" }

// add makes a host on the network.
func (l *netlab) add(name string) *host {
	l.t.Helper()
	i := len(l.hosts) + 2
	h := &host{name: name, ns: fmt.Sprintf("jx%s-%s", l.id, name), ip: l.prefix + strconv.Itoa(i), link: fmt.Sprintf("jx%s%02dr", l.id, i)}
	peer := fmt.Sprintf("jx%s%02dn", l.id, i)
	l.ip("netns", "add", h.ns)
	l.hosts = append(l.hosts, h)
	l.ip("link", "add", h.link, "type", "veth", "peer", "name", peer)
	l.ip("link", "set", h.link, "master", l.bridge)
	l.ip("link", "set", h.link, "up")
	l.ip("link", "set", peer, "netns", h.ns)
	l.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", peer)
	l.ip("-n", h.ns, "link", "set", peer, "up")
	l.ip("-n", h.ns, "link", "set", "lo", "up")
	return h
}

// cut takes h off the network (its cable pulled: nothing in or out) and
// heal puts it back.
func (l *netlab) cut(h *host)  { l.ip("link", "set", h.link, "down") }
func (l *netlab) heal(h *host) { l.ip("link", "set", h.link, "up") }

func (l *netlab) close() {
	for _, h := range l.hosts {
		_ = exec.Command("ip", "link", "del", h.link).Run()
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	}
	_ = exec.Command("ip", "link", "del", l.bridge).Run()
}

// forward serves addr (on the bridge) by connecting each client to to: the
// machine's PostgreSQL, which listens on loopback only.
func forward(t *testing.T, addr, to string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// proc is one process of the shop on one host.
type proc struct {
	t    *testing.T
	name string
	h    *host
	args []string
	env  []string
	logf string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.logf, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.h.ns, binary}, p.args...)...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, f, f
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

// kill9 kills the process (ip netns exec runs it in its own place).
func (p *proc) kill9() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.logf)
	return tail(string(b), 40)
}

// TestMultiHost runs the shop as it runs beyond one machine: every service
// on a host of its own (a network namespace), a three-node NATS JetStream
// cluster (embedded brokers, every stream in three copies), PostgreSQL for
// every service, etcd discovery and mTLS on every internal hop. Under a
// steady order load it cuts inventory-service's host off the network and
// brings it back, kills the leader of the saga replies' stream with kill
// -9 (and restarts it), and kills order-service with kill -9 (and
// restarts it). Afterwards every order is terminal, none is lost, none is
// charged twice and stock is conserved; the figures are logged.
func TestMultiHost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system on several hosts; skipped with -short")
	}
	lab := newNetlab(t)
	// Each service that stores has a schema of its own.
	stores := []string{"user-service", "inventory-service", "payment-service", "shipping-service", "notification-service", "deadletter-service", "order-service"}
	schemas := map[string]*url.URL{}
	for _, s := range stores {
		u, err := url.Parse(sqldbtest.PostgresSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		schemas[s] = u
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatal("etcd is required (JUNCTION_REQUIRE_ALL=1): apt-get install etcd-server")
		}
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	seed := sagaSeed(t)

	// The infrastructure host: etcd and PostgreSQL on the bridge.
	etcdClient := lab.gateway() + ":" + freePortOn(t, lab.gateway())
	etcdPeer := lab.gateway() + ":" + freePortOn(t, lab.gateway())
	etcd := exec.Command(etcdBin, "--name", "lab", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+etcdClient, "--advertise-client-urls", "http://"+etcdClient,
		"--listen-peer-urls", "http://"+etcdPeer, "--initial-advertise-peer-urls", "http://"+etcdPeer,
		"--initial-cluster", "lab=http://"+etcdPeer, "--log-level", "error")
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Process.Kill(); _ = etcd.Wait() })
	pgAddr := forward(t, lab.gateway()+":0", "127.0.0.1:5432")
	// The hosts reach PostgreSQL through the bridge.
	dbURL := func(service string) string {
		u := *schemas[service]
		u.Host = pgAddr
		return u.String()
	}
	opened := map[string]*sqldb.DB{}
	open := func(service string) *sqldb.DB {
		if db := opened[service]; db != nil {
			return db
		}
		db, err := sqldb.Open(ctx, dbURL(service))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		opened[service] = db
		return db
	}
	ist, err := inventorystore.New(ctx, open("inventory-service"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inventory.NewService(ist).Seed(ctx, loadProducts); err != nil {
		t.Fatal(err)
	}

	// Certificates from one CA, as cert-manager would issue them.
	ca, err := identity.OpenCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id, service string) identity.Files {
		f := identity.Files{Cert: filepath.Join(dir, "pki", id+".crt"), Key: filepath.Join(dir, "pki", id+".key"), CA: ca.BundleFile()}
		if _, err := ca.IssueFiles(service, time.Hour, f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	certs := func(id, service string) []string {
		f := issue(id, service)
		return []string{"JUNCTION_TLS_CERT=" + f.Cert, "JUNCTION_TLS_KEY=" + f.Key, "JUNCTION_TLS_CA=" + f.CA}
	}
	operator, err := identity.Load(issue("operator", "operator"))
	if err != nil {
		t.Fatal(err)
	}
	internal := &http.Client{Transport: operator.Transport(), Timeout: 5 * time.Second}

	common := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"JUNCTION_DISCOVERY=etcd://" + etcdClient + "/junction/services/",
		"JUNCTION_HTTP_ADDR=0.0.0.0:8080", "JUNCTION_GRPC_ADDR=0.0.0.0:9090",
		"JUNCTION_LOG_LEVEL=info", "OTEL_SDK_DISABLED=true",
		"JUNCTION_RATE_PER_USER=0", "JUNCTION_RATE_PER_ADDRESS=0", "JUNCTION_DISPATCH_DELAY=100ms",
		"JUNCTION_SEED_DEMO=true", "JUNCTION_DEMO_PASSWORD=junction",
	}
	procs := map[string]*proc{}
	newProc := func(id, service string, h *host, extra ...string) *proc {
		env := append(append(append([]string{}, common...), certs(id, service)...),
			"JUNCTION_INSTANCE_ID="+id, "JUNCTION_ADVERTISE_HOST="+h.ip, "JUNCTION_DATA="+filepath.Join(dir, id))
		p := &proc{t: t, name: id, h: h, args: []string{"serve", service}, env: append(env, extra...), logf: filepath.Join(dir, id+".log")}
		procs[id] = p
		t.Cleanup(p.kill9)
		return p
	}
	var brokers []*proc
	var routes, clients []string
	var brokerHosts []*host
	for i := 1; i <= 3; i++ {
		h := lab.add(fmt.Sprintf("nats%d", i))
		brokerHosts = append(brokerHosts, h)
		routes = append(routes, h.ip+":6222")
		clients = append(clients, h.ip+":4222")
	}
	for i, h := range brokerHosts {
		brokers = append(brokers, newProc(fmt.Sprintf("broker-%d", i+1), "broker", h, "JUNCTION_LOG_LEVEL=debug",
			"JUNCTION_BROKER_ADDR=0.0.0.0:4222", "JUNCTION_BROKER_CLUSTER_ADDR=0.0.0.0:6222", "JUNCTION_BROKER_ROUTES="+strings.Join(routes, ",")))
	}
	brokerURL := "nats://" + strings.Join(clients, ",") + "?replicas=3"
	hosts := map[string]*host{}
	for _, s := range append([]string{"payment-provider"}, append(stores, "gateway")...) {
		h := lab.add(strings.TrimSuffix(s, "-service"))
		hosts[s] = h
		extra := []string{"JUNCTION_BROKER=" + brokerURL, "JUNCTION_BROKER_TLS=true"}
		if schemas[s] != nil {
			extra = append(extra, "JUNCTION_DATABASE_URL="+dbURL(s))
		}
		newProc(s+"-1", s, h, extra...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for id, p := range procs {
				t.Logf("%s:\n%s", id, p.tail())
			}
		}
	})
	for _, p := range procs {
		p.start()
	}
	gateway := "http://" + hosts["gateway"].ip + ":8080"
	eventually(t, 90*time.Second, "every host's process ready", func() error {
		for id, p := range procs {
			c := internal
			if strings.HasPrefix(id, "gateway") {
				c = http.DefaultClient // the public port: plaintext
			}
			resp, err := c.Get("http://" + p.h.ip + ":8080/readyz")
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", id, err, p.tail())
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: /readyz %d\n%s", id, resp.StatusCode, p.tail())
			}
		}
		return nil
	})
	s := &shop{t: t, sys: &system{Gateway: gateway}, http: &http.Client{Timeout: 15 * time.Second}, open: open}
	s.provider = func() paymentsim.Stats {
		resp, err := internal.Get("http://" + hosts["payment-provider"].ip + ":8080/v1/admin/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st paymentsim.Stats
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	eventually(t, 30*time.Second, "the demo accounts", func() error {
		c := newClient(t, gateway)
		r := c.do("POST", "/api/auth/login", map[string]string{"username": "admin", "password": "junction"})
		if r.Status != http.StatusOK {
			return fmt.Errorf("login = %d", r.Status)
		}
		return nil
	})
	s.admin = newClient(t, gateway)
	s.admin.login("admin", "junction")
	for _, name := range []string{"alice", "bob"} {
		c := newClient(t, gateway)
		c.login(name, "junction")
		s.customers = append(s.customers, c)
	}
	s.initial = s.stock()

	// Who leads the saga replies' stream, asked as the operator.
	nc, err := nats.Connect(strings.Join(clients, ","), nats.Secure(operator.ClientConfig()), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() (string, int) {
		var name string
		var replicas int
		eventually(t, 30*time.Second, "the saga replies' stream leader", func() error {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := js.Stream(sctx, natsbus.StreamName(events.TopicOrderReplies))
			if err != nil {
				return err
			}
			info, err := st.Info(sctx)
			if err != nil {
				return err
			}
			if info.Cluster == nil || info.Cluster.Leader == "" {
				return fmt.Errorf("no leader")
			}
			name, replicas = info.Cluster.Leader, info.Config.Replicas
			return nil
		})
		return name, replicas
	}

	n, rate := sagaOrders(400), 10.0
	loaded := make(chan []*attempt, 1)
	go func() { loaded <- s.load(n, rate, mixed(rand.New(rand.NewPCG(seed, 9))), anyCard, nil) }()
	type fault struct {
		what     string
		from, to time.Time
	}
	var faults []fault
	// The schedule's pauses are the faults' shape, not waits for a
	// condition.
	time.Sleep(6 * time.Second)
	f := fault{what: "inventory-service's host cut off for 6s", from: time.Now()}
	lab.cut(hosts["inventory-service"])
	time.Sleep(6 * time.Second)
	lab.heal(hosts["inventory-service"])
	f.to = time.Now()
	faults = append(faults, f)

	time.Sleep(4 * time.Second)
	was, replicas := leader()
	if replicas != 3 {
		t.Errorf("the saga replies' stream has %d replicas, want 3", replicas)
	}
	f = fault{what: "kill -9 " + was + ", the saga replies' stream leader; restarted after 5s", from: time.Now()}
	procs[was].kill9()
	time.Sleep(5 * time.Second)
	procs[was].start()
	f.to = time.Now()
	faults = append(faults, f)
	now, _ := leader()
	t.Logf("the stream's leader was %s, now %s", was, now)

	time.Sleep(4 * time.Second)
	f = fault{what: "kill -9 order-service-1; restarted at once", from: time.Now()}
	procs["order-service-1"].kill9()
	time.Sleep(200 * time.Millisecond)
	procs["order-service-1"].start()
	f.to = time.Now()
	faults = append(faults, f)

	as := <-loaded
	rep, _ := s.check(as, seed, map[string]int{was: 1, "order-service-1": 1})
	if t.Failed() {
		// A service whose outbox still holds messages long after the
		// load ended has a relay that stopped publishing.
		for _, s := range stores {
			var unsent int
			var failing sql.NullString
			err := open(s).QueryRowContext(ctx, `SELECT COUNT(*), MAX(last_error) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent, &failing)
			t.Logf("%s's outbox: %d unsent, last error %q (%v)", s, unsent, failing.String, err)
		}
		// Who refused new orders: each process's answers of 503 to
		// POST /api/orders (the gateway's shed and throttle, order-service's
		// admission and server limit), and each server limit's lines of
		// refusals.
		for id, p := range procs {
			b, _ := os.ReadFile(p.logf)
			refusedOrders, limitLines := 0, []string{}
			for line := range strings.Lines(string(b)) {
				switch {
				case strings.Contains(line, `"method":"POST","path":"/api/orders","status":503`):
					refusedOrders++
				case strings.Contains(line, "work refused in the last second") && len(limitLines) < 10:
					limitLines = append(limitLines, strings.TrimSpace(line))
				}
			}
			if refusedOrders > 0 || len(limitLines) > 0 {
				t.Logf("%s: %d POST /api/orders answered 503; its server limit's refusals: %q", id, refusedOrders, limitLines)
			}
		}
	}
	for _, f := range faults {
		t.Logf("fault %s .. %s: %s", f.from.Format("15:04:05.000"), f.to.Format("15:04:05.000"), f.what)
	}
	resumed := 0
	for _, p := range procs {
		b, _ := os.ReadFile(p.logf)
		resumed += strings.Count(string(b), "consuming again after the broker ended")
	}
	t.Logf("subscriptions that consumed again after the broker ended their pull: %d", resumed)
	t.Logf("multi-host: %d attempted at %.0f/s on %d hosts; %d orders (%d shipped, %d rejected), %d refused at the door, %d indeterminate, %d stuck (lost), %d double charges, stock conservation error %d",
		rep.Attempted, rate, len(lab.hosts), rep.Orders, rep.Completed, rep.Rejected, rep.RefusedAtTheDoor, rep.Indeterminate, rep.Stuck, rep.DoubleCharges, rep.ConservationError)
}

// freePortOn returns a port free on host's address.
func freePortOn(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
