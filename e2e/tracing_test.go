package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// traceJSON is a trace as up's trace store serves it.
type traceJSON struct {
	TraceID  string     `json:"traceId"`
	Root     string     `json:"root"`
	RootSvc  string     `json:"rootService"`
	Services []string   `json:"services"`
	Orphans  int        `json:"orphanCount"`
	Spans    []spanJSON `json:"spans"`
}

type spanJSON struct {
	TraceID    string         `json:"traceId"`
	SpanID     string         `json:"spanId"`
	Parent     string         `json:"parentSpanId"`
	Name       string         `json:"name"`
	Kind       string         `json:"kind"`
	Service    string         `json:"service"`
	Attributes map[string]any `json:"attributes"`
	Links      []struct {
		SpanID string `json:"spanId"`
	} `json:"links"`
}

// postTrace returns the trace of order id's POST at the gateway, as the
// trace store has it now; false if it has none.
func postTrace(t *testing.T, store *client, id int64) (traceJSON, bool) {
	t.Helper()
	var list struct {
		Traces []traceJSON `json:"traces"`
	}
	store.do("GET", fmt.Sprintf("/v1/orders/%d/traces", id), nil).decode(t, &list)
	i := slices.IndexFunc(list.Traces, func(x traceJSON) bool { return x.Root == "POST /api/orders" && x.RootSvc == "gateway" })
	if i < 0 {
		return traceJSON{}, false
	}
	var tr traceJSON
	r := store.do("GET", "/v1/traces/"+list.Traces[i].TraceID, nil)
	if r.Status != http.StatusOK {
		return traceJSON{}, false
	}
	r.decode(t, &tr)
	return tr, true
}

// orderTrace waits until the trace store holds the trace of order id's
// POST whole (want's spans, by service, all there and no span's parent
// missing), and returns it.
func orderTrace(t *testing.T, base string, id int64, want map[string][]string) traceJSON {
	t.Helper()
	store := newClient(t, base)
	var tr traceJSON
	eventually(t, 20*time.Second, fmt.Sprintf("order %d's whole trace in the store", id), func() error {
		var ok bool
		if tr, ok = postTrace(t, store, id); !ok {
			return fmt.Errorf("no trace of order %d rooted at the gateway's POST /api/orders yet", id)
		}
		for svc, names := range want {
			for _, n := range names {
				if !slices.ContainsFunc(tr.Spans, func(s spanJSON) bool { return s.Service == svc && s.Name == n }) {
					return fmt.Errorf("no span %q of %s yet (%d spans)", n, svc, len(tr.Spans))
				}
			}
		}
		// Each process exports its spans in batches of its own, so a span
		// can arrive before its parent from another process does: the
		// trace is whole once no span's parent is missing.
		if tr.Orphans != 0 {
			return fmt.Errorf("%d of its %d spans have a parent not in the store yet", tr.Orphans, len(tr.Spans))
		}
		return nil
	})
	return tr
}

// wholeOrder are the hops of one confirmed and dispatched order, by
// service.
var wholeOrder = map[string][]string{
	"gateway":              {"POST /api/orders"},
	"order-service":        {"POST /api/orders", "user.v1.UserService/GetUser", "saga start place-order", "saga command reserve-stock", "saga command authorize-payment", "saga command schedule-shipment", "saga command capture-payment", "process order-replies", "process shipments"},
	"user-service":         {"user.v1.UserService/GetUser"},
	"inventory-service":    {"inventory.v1.InventoryService/CheckAvailability", "process inventory-commands", "process orders"},
	"payment-service":      {"process payment-commands", "POST payment-provider"},
	"payment-provider":     {"POST /"},
	"shipping-service":     {"process shipping-commands", "dispatch shipment", "send shipments"},
	"notification-service": {"process orders", "process shipments"},
}

// TestOneTracePerOrder: an order is one trace, from the POST at the
// gateway through every service (HTTP, gRPC, the outbox, the broker, the
// saga, the payment provider) to the shipment's dispatch, with no span
// whose parent is missing; the messaging spans follow OpenTelemetry's
// conventions; and the services' log lines about it carry its trace id.
func TestOneTracePerOrder(t *testing.T) {
	t.Run("nats", func(t *testing.T) { oneTracePerOrder(t, "nats") })
	// The same over Kafka's protocol: franz-go's kfake in this process,
	// the shop's processes connected to it over TCP.
	t.Run("kafka", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts the whole system; skipped with -short")
		}
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		oneTracePerOrder(t, "kafka", "--broker", "kafka://"+strings.Join(c.ListenAddrs(), ","))
	})
	// And over the machine's RabbitMQ, in a virtual host of its own.
	t.Run("rabbitmq", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts the whole system; skipped with -short")
		}
		vhost := rabbitVhost(t)
		oneTracePerOrder(t, "rabbitmq", "--broker", "amqp://guest:guest@127.0.0.1:5672/"+vhost)
	})
}

// rabbitVhost makes a fresh virtual host on the machine's RabbitMQ for the
// test (deleted after it), so no queue of an earlier run is in the way;
// without RabbitMQ the test skips, or fails under JUNCTION_REQUIRE_ALL=1.
func rabbitVhost(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatalf("RabbitMQ is required (JUNCTION_REQUIRE_ALL=1): %s", why)
		}
		t.Skipf("no RabbitMQ: %s", why)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second); err != nil {
		missing(err.Error())
	} else {
		c.Close()
	}
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		missing("rabbitmqctl is not installed")
	}
	vhost := fmt.Sprintf("junction-e2e-%d", time.Now().UnixNano())
	for _, args := range [][]string{{"add_vhost", vhost}, {"set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"}} {
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command(ctl, "delete_vhost", vhost).Run() })
	return vhost
}

func oneTracePerOrder(t *testing.T, system string, args ...string) {
	// Every trace kept: this is about what a trace holds, not which are.
	s := startShop(t, []string{"JUNCTION_TRACES_PER_SECOND=-1"}, nil, args...)
	if s.sys.Traces == "" {
		t.Fatalf("junction up printed no trace store:\n%s", s.sys.out.String())
	}
	a := &attempt{key: "trace-1", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(s.customers[0], a, "")
	if a.id == 0 {
		t.Fatalf("order not placed: %s", a.err)
	}
	tr := orderTrace(t, s.sys.Traces, a.id, wholeOrder)

	byID := map[string]spanJSON{}
	for _, sp := range tr.Spans {
		byID[sp.SpanID] = sp
	}
	roots := 0
	for _, sp := range tr.Spans {
		if sp.TraceID != tr.TraceID {
			t.Errorf("span %s (%s) is of trace %s", sp.Name, sp.Service, sp.TraceID)
		}
		switch _, ok := byID[sp.Parent]; {
		case sp.Parent == "":
			roots++
		case !ok:
			t.Errorf("span %q of %s has parent %s, which is not in the trace", sp.Name, sp.Service, sp.Parent)
		}
		switch sp.Kind {
		case "consumer":
			for _, k := range []string{"messaging.system", "messaging.destination.name", "messaging.consumer.group.name", "messaging.message.id", "junction.message.delivery_count"} {
				if sp.Attributes[k] == nil {
					t.Errorf("process span %q of %s has no %s: %v", sp.Name, sp.Service, k, sp.Attributes)
				}
			}
			if sp.Attributes["messaging.system"] != system || sp.Attributes["messaging.operation.type"] != "process" {
				t.Errorf("process span %q: %v", sp.Name, sp.Attributes)
			}
			// Its parent is the message's creation, in the producer.
			if p := byID[sp.Parent]; !strings.HasPrefix(p.Name, "create ") && !strings.HasPrefix(p.Name, "send ") {
				t.Errorf("process span %q of %s has parent %q, want the message's create span", sp.Name, sp.Service, p.Name)
			}
		case "producer":
			if strings.HasPrefix(sp.Name, "send ") && byID[sp.Parent].Name == "create "+strings.TrimPrefix(sp.Name, "send ") {
				if len(sp.Links) != 1 || sp.Links[0].SpanID != sp.Parent {
					t.Errorf("send span %q of %s is not linked to its create span: %v", sp.Name, sp.Service, sp.Links)
				}
			}
		}
	}
	if roots != 1 {
		t.Errorf("%d root spans, want 1", roots)
	}
	var services []string
	for svc := range wholeOrder {
		services = append(services, svc)
	}
	slices.Sort(services)
	if !slices.Equal(tr.Services, services) {
		t.Errorf("services = %v, want %v", tr.Services, services)
	}

	// The logs of the request and of its messages carry the trace id, and
	// the order's id where it is known.
	tagged := map[string]bool{}
	for _, l := range strings.Split(s.sys.out.String(), "\n") {
		if strings.Contains(l, `"trace_id":"`+tr.TraceID+`"`) {
			inst, _, _ := strings.Cut(l, "|")
			tagged[strings.TrimSpace(inst)] = true
			if strings.Contains(l, `"order_id"`) && !strings.Contains(l, `"order_id":"`+strconv.FormatInt(a.id, 10)+`"`) {
				t.Errorf("a log line of trace %s names another order: %s", tr.TraceID, l)
			}
		}
	}
	if !tagged["gateway-1"] {
		t.Errorf("no gateway log line carries trace_id %s (tagged: %v)", tr.TraceID, tagged)
	}
	t.Logf("order %d: trace %s, %d spans across %d services; log lines with its trace id from %v", a.id, tr.TraceID, len(tr.Spans), len(tr.Services), tagged)
}

// TestTraceStoreAPI: the trace store's answers to what it does not hold
// and to malformed requests.
func TestTraceStoreAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system; skipped with -short")
	}
	sys := startSystem(t, t.TempDir())
	for _, c := range []struct {
		method, path, ctype string
		want                int
	}{
		{"GET", "/v1/traces/0af7651916cd43dd8448eb211c80319c", "", http.StatusNotFound},
		{"GET", "/v1/traces/not-a-trace-id", "", http.StatusBadRequest},
		{"GET", "/v1/traces/00000000000000000000000000000000", "", http.StatusBadRequest},
		{"GET", "/v1/traces?limit=0", "", http.StatusBadRequest},
		{"GET", "/v1/traces?limit=5", "", http.StatusOK},
		{"GET", "/v1/orders/x/traces", "", http.StatusBadRequest},
		{"GET", "/v1/orders/999/traces", "", http.StatusOK},
		{"POST", "/v1/traces", "application/json", http.StatusUnsupportedMediaType},
		{"POST", "/v1/traces", "application/x-protobuf", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(c.method, sys.Traces+c.path, strings.NewReader("\xff\xff not protobuf"))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%s) = %d, want %d", c.method, c.path, c.ctype, resp.StatusCode, c.want)
		}
		if c.want >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: Content-Type %q, want a problem document", c.method, c.path, resp.Header.Get("Content-Type"))
		}
	}
}

// TestCollectorAway: with the collector the services are told of down,
// orders go through as before; their spans are dropped and counted, and
// each service says so once, not once per batch.
func TestCollectorAway(t *testing.T) {
	ln := freePort(t) // nobody listens there
	s := startShop(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln, "JUNCTION_TRACES_PER_SECOND=-1"}, nil)
	as := s.load(20, 20, func(int) []line { return []line{{SKU: "JX-MUG", Quantity: 1}} }, func(int) string { return "" }, nil)
	got := s.quiesce(as, 30*time.Second)
	for _, a := range as {
		if st := got[a.id].Status; a.id == 0 || (st != "confirmed" && st != "shipped") {
			t.Errorf("order %d (%s): %q, want confirmed or shipped", a.id, a.err, got[a.id].Status)
		}
	}
	orders := s.endpoint("order-service")
	eventually(t, 30*time.Second, "order-service to count its dropped spans", func() error {
		resp, err := s.sys.internal(t).Get("http://" + orders + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, `junction_trace_spans_dropped_total{reason="export_failed"}`) {
				if n, _ := strconv.ParseFloat(strings.Fields(l)[1], 64); n > 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("no export_failed spans counted yet")
	})
	warned := 0
	for _, l := range strings.Split(s.sys.out.String(), "\n") {
		if strings.HasPrefix(l, "order-service-1") && strings.Contains(l, "traces not exported") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("order-service warned %d times about the collector, want once", warned)
	}
}

// TestSampledTracesAreWhole: with the default sampler (a budget of new
// traces a second at the gateway) under more orders than it keeps, every
// order trace kept is whole: the decision is the root's and every hop
// follows it, so no trace lacks a hop and no hop starts a trace of its own.
func TestSampledTracesAreWhole(t *testing.T) {
	s := startShop(t, nil, nil)
	store := newClient(t, s.sys.Traces)
	// 120 orders in two seconds: about twice what 20 new traces a second
	// (and a second's burst) keep.
	as := s.load(120, 60, func(int) []line { return []line{{SKU: "JX-MUG", Quantity: 1}} }, func(int) string { return "" }, nil)
	views := s.quiesce(as, 30*time.Second)
	// Each order's trace, if the sampler kept it: a confirmed order's has
	// every hop of wholeOrder; one the saga rejected (its stock taken by
	// the orders before it between the check at the door and the
	// reservation) ends at the rejection. Neither may miss a parent.
	var kept []traceJSON
	rejected := 0
	eventually(t, 20*time.Second, "every kept order trace whole", func() error {
		kept, rejected = kept[:0], 0
		for _, a := range as {
			if a.id == 0 {
				continue // refused at the door (out of stock): no order
			}
			tr, ok := postTrace(t, store, a.id)
			if !ok {
				continue // not kept
			}
			want := wholeOrder
			switch st := views[a.id].Status; st {
			case "confirmed", "shipped":
			case "rejected":
				want = map[string][]string{"order-service": {"saga start place-order", "saga command reserve-stock", "process order-replies"}, "inventory-service": {"process inventory-commands"}}
				rejected++
			default:
				return fmt.Errorf("order %d is %q", a.id, st)
			}
			for svc, names := range want {
				for _, n := range names {
					if !slices.ContainsFunc(tr.Spans, func(sp spanJSON) bool { return sp.Service == svc && sp.Name == n }) {
						return fmt.Errorf("order %d (%s): trace %s has no span %q of %s (%d spans)", a.id, views[a.id].Status, tr.TraceID, n, svc, len(tr.Spans))
					}
				}
			}
			if tr.Orphans != 0 {
				return fmt.Errorf("trace %s has %d orphan spans", tr.TraceID, tr.Orphans)
			}
			kept = append(kept, tr)
		}
		if len(kept) == 0 {
			return fmt.Errorf("no order trace kept")
		}
		return nil
	})
	// No hop of an order whose trace was not kept shows up on its own. A
	// kept trace's root may arrive after its children (each process
	// exports in batches), so a rootless trace counts only if it stays so.
	eventually(t, 15*time.Second, "every trace rooted at the gateway", func() error {
		var recent struct {
			Traces []struct {
				Root        string `json:"root"`
				RootService string `json:"rootService"`
			} `json:"traces"`
		}
		store.do("GET", "/v1/traces?limit=1000", nil).decode(t, &recent)
		for _, sum := range recent.Traces {
			if sum.RootService != "gateway" && sum.Root != "GET /.well-known/jwks.json" {
				return fmt.Errorf("a trace rooted at %q of %s: a hop of an unsampled request started its own", sum.Root, sum.RootService)
			}
		}
		return nil
	})
	refused := 0
	for _, a := range as {
		if a.refused {
			refused++
		}
	}
	t.Logf("%d of %d orders traced, each whole (%d of them rejected by the saga: out of stock at the reservation; %d refused at the door)", len(kept), len(as), rejected, refused)
}
