package dnsdisc_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/discoverytest"
	"github.com/junction-go/junction/discovery/dnsdisc"
)

const suffix = "shop.svc.cluster.local"

// dnsServer is a small authoritative DNS server on a loopback UDP port,
// holding SRV and A records the test changes as it goes, the way a
// Kubernetes headless service's records change as pods come and go.
type dnsServer struct {
	conn net.PacketConn

	mu   sync.Mutex
	srv  map[string][]net.SRV // lower-case name with the final dot
	a    map[string][]netip.Addr
	seen int // queries answered
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{conn: conn, srv: map[string][]net.SRV{}, a: map[string][]netip.Addr{}}
	done := make(chan struct{})
	go func() { defer close(done); d.serve() }()
	t.Cleanup(func() { conn.Close(); <-done })
	return d
}

// resolver sends every lookup to d.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.conn.WriteTo(resp, from)
		}
	}
}

func (d *dnsServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen++
	srvs, addrs := d.srv[name], d.a[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if len(srvs) == 0 && len(addrs) == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
	switch q.Type {
	case dnsmessage.TypeSRV:
		for _, s := range srvs {
			target, err := dnsmessage.NewName(s.Target)
			if err != nil {
				return nil, err
			}
			if err := b.SRVResource(hdr, dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: target}); err != nil {
				return nil, err
			}
		}
	case dnsmessage.TypeA:
		for _, a := range addrs {
			if err := b.AResource(hdr, dnsmessage.AResource{A: a.As4()}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}

// add publishes inst as a pod of its service: an A record for the pod's
// name and an SRV record per endpoint. Safe to call from any goroutine.
func (d *dnsServer) add(t *testing.T, inst discovery.Instance) {
	t.Helper()
	host := inst.ID + "." + inst.Service + "." + suffix + "."
	d.mu.Lock()
	defer d.mu.Unlock()
	for ep, addr := range inst.Endpoints {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			t.Error(err) // not Fatal: add is called from a goroutine too
			continue
		}
		d.a[host] = []netip.Addr{ap.Addr()}
		name := "_" + ep + "._tcp." + inst.Service + "." + suffix + "."
		d.srv[name] = append(d.srv[name], net.SRV{Target: host, Port: ap.Port(), Weight: 10})
	}
}

// remove takes the pod id away: its SRV records and its name.
func (d *dnsServer) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, srvs := range d.srv {
		var kept []net.SRV
		for _, s := range srvs {
			if !strings.HasPrefix(s.Target, id+".") {
				kept = append(kept, s)
			}
		}
		d.srv[name] = kept
	}
	for name := range d.a {
		if strings.HasPrefix(name, id+".") {
			delete(d.a, name)
		}
	}
}

func TestDNSBackend(t *testing.T) {
	discoverytest.Run(t, func(t *testing.T) discoverytest.Backend {
		d := startDNS(t)
		src, err := dnsdisc.New(dnsdisc.Config{Suffix: suffix, Resolver: d.resolver(), Interval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return discoverytest.Backend{
			Source: src,
			Add:    d.add,
			Remove: func(_ *testing.T, id string) { d.remove(id) },
		}
	})
}

func TestLookupReadsSRVAndARecords(t *testing.T) {
	d := startDNS(t)
	src, err := dnsdisc.New(dnsdisc.Config{Suffix: suffix, Resolver: d.resolver()})
	if err != nil {
		t.Fatal(err)
	}
	d.add(t, discovery.Instance{ID: "10-0-0-7", Service: "order-service", Endpoints: map[string]string{"http": "10.0.0.7:8080", "grpc": "10.0.0.7:9090"}})
	d.add(t, discovery.Instance{ID: "10-0-0-8", Service: "order-service", Endpoints: map[string]string{"http": "10.0.0.8:8080"}})
	v, err := src.Lookup(context.Background(), "order-service")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Instances) != 2 {
		t.Fatalf("Lookup = %+v, want two instances", v)
	}
	first, second := v.Instances[0], v.Instances[1]
	if first.Endpoints["http"] != "10.0.0.7:8080" || first.Endpoints["grpc"] != "10.0.0.7:9090" || second.Endpoints["http"] != "10.0.0.8:8080" || second.Endpoints["grpc"] != "" {
		t.Errorf("endpoints = %v and %v, want the pods' SRV ports at their A addresses", first.Endpoints, second.Endpoints)
	}
	again, _ := src.Lookup(context.Background(), "order-service")
	if again.Revision != v.Revision {
		t.Errorf("revision moved from %d to %d with no change", v.Revision, again.Revision)
	}
}

func TestServiceWithoutSRVUsesConfiguredPorts(t *testing.T) {
	d := startDNS(t)
	d.mu.Lock()
	d.a["legacy."+suffix+"."] = []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")}
	d.mu.Unlock()
	src, _ := dnsdisc.New(dnsdisc.Config{Suffix: suffix, Resolver: d.resolver(), Ports: map[string]int{"http": 8080}})
	v, err := src.Lookup(context.Background(), "legacy")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, inst := range v.Instances {
		got = append(got, inst.Endpoints["http"])
	}
	if strings.Join(got, ",") != "10.1.0.1:8080,10.1.0.2:8080" {
		t.Errorf("http endpoints = %v, want both A addresses on port 8080", got)
	}
}

func TestWatchAnswersOnChangeOrAfterMaxWait(t *testing.T) {
	d := startDNS(t)
	src, _ := dnsdisc.New(dnsdisc.Config{Suffix: suffix, Resolver: d.resolver(), Interval: 20 * time.Millisecond, MaxWait: 300 * time.Millisecond})
	ctx := context.Background()
	d.add(t, discovery.Instance{ID: "p1", Service: "svc", Endpoints: map[string]string{"http": "10.0.0.1:80"}})
	v, err := src.Watch(ctx, "svc", discovery.View{})
	if err != nil || len(v.Instances) != 1 {
		t.Fatalf("first Watch = %+v, %v", v, err)
	}
	// Unchanged: the watch returns the same revision once MaxWait passes,
	// having asked DNS more than once.
	d.mu.Lock()
	before := d.seen
	d.mu.Unlock()
	same, err := src.Watch(ctx, "svc", v)
	d.mu.Lock()
	asked := d.seen - before
	d.mu.Unlock()
	if err != nil || same.Revision != v.Revision || asked < 2 {
		t.Fatalf("idle Watch = rev %d, %v after %d queries; want rev %d after several", same.Revision, err, asked, v.Revision)
	}
	// The pod comes once the watch has asked and found nothing new.
	d.mu.Lock()
	mark := d.seen
	d.mu.Unlock()
	go func() {
		for {
			d.mu.Lock()
			asked := d.seen > mark
			d.mu.Unlock()
			if asked {
				break
			}
			time.Sleep(time.Millisecond)
		}
		d.add(t, discovery.Instance{ID: "p2", Service: "svc", Endpoints: map[string]string{"http": "10.0.0.2:80"}})
	}()
	next, err := src.Watch(ctx, "svc", v)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Instances) == 1 {
		// MaxWait may pass before the change on a slow machine; the next
		// watch must see it.
		next, err = src.Watch(ctx, "svc", next)
	}
	if err != nil || len(next.Instances) != 2 || next.Revision <= v.Revision {
		t.Errorf("Watch after a pod came = %+v, %v; want two instances at a later revision", next, err)
	}
}

func TestNewNeedsASuffix(t *testing.T) {
	if _, err := dnsdisc.New(dnsdisc.Config{}); err == nil {
		t.Error("New without a suffix succeeded")
	}
}
