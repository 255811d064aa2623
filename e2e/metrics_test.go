package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v2"

	"github.com/junction-go/junction/discovery"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated docs (docs/observability.md's metrics)")

// family is one metric as the services expose it.
type family struct {
	name, typ, help string
	labels          []string
}

// TestEveryInstanceServesItsMetrics runs the system, places an order, and
// scrapes GET /metrics of every instance the registry lists (and of the
// registry): each answers, each is clean for promtool, no label holds an
// id, and the metrics are exactly those docs/observability.md lists (its
// table is generated from this scrape: -update rewrites it).
func TestEveryInstanceServesItsMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	// A user's rate of 5 requests a second, so that a burst of alice's
	// is refused (429 with Retry-After) and the refusals' metric shows.
	s := startSystemEnv(t, t.TempDir(), []string{"JUNCTION_RATE_PER_USER=5"})
	c := newClient(t, s.Gateway)
	c.login("alice", "junction")
	r := c.do("POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}})
	if r.Status != http.StatusCreated {
		t.Fatalf("place an order = %d %s", r.Status, r.Body)
	}
	var o orderJSON
	r.decode(t, &o)
	c.do("GET", fmt.Sprintf("/api/orders/%d?wait=10s", o.OrderID), nil)
	limited := 0
	for range 10 {
		if r := c.do("GET", "/api/orders", nil); r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("10 reads at once within a rate of 5 a second: none refused")
	}
	// A message no consumer can read: a dead letter, so its metric shows.
	poison(t, s, "metrics-poison")
	admin := newClient(t, s.Gateway)
	admin.login("admin", "junction")
	eventually(t, 15*time.Second, "the poison message to be a dead letter", func() error {
		if r := admin.do("GET", "/api/admin/deadletters/1", nil); r.Status != http.StatusOK {
			return fmt.Errorf("%d", r.Status)
		}
		return nil
	})

	cat, err := s.registry(t).Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{"registry": strings.TrimPrefix(strings.TrimPrefix(s.Registry, "https://"), "http://")}
	for _, v := range cat.Services {
		for _, in := range v.Instances {
			if addr := in.Endpoints[discovery.EndpointHTTP]; addr != "" && in.Service != "fault-links" {
				targets[in.Service] = addr // one instance of each is enough
			}
		}
	}
	if len(targets) < 10 {
		t.Fatalf("only %d services to scrape: %v", len(targets), targets)
	}
	promtool, promErr := exec.LookPath("promtool")
	if promErr != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatalf("promtool is required (JUNCTION_REQUIRE_ALL=1): %v (apt-get install prometheus)", promErr)
		}
		t.Logf("no promtool (%v): the exposition is not linted", promErr)
	}
	families := map[string]*family{}
	exposed, exposedLabels := map[string]bool{}, map[string]bool{}
	// admitted is each service's server_limit_admitted_total by priority.
	admitted := map[string]map[string]float64{}
	for service, addr := range targets {
		// The internal ports take the operator's certificate; the
		// gateway's is public.
		hc := s.internal(t)
		if service == "gateway" {
			hc = &http.Client{Timeout: 5 * time.Second}
		}
		// Every instance has served a request of its own before: the
		// HTTP metrics show whatever the probes did so far.
		if resp, err := hc.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
		}
		resp, err := hc.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("%s: GET /metrics: %v", service, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET /metrics = %d", service, resp.StatusCode)
		}
		if promtool != "" {
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("%s: promtool check metrics: %v\n%s", service, err, out)
			}
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", service, err)
		}
		if mf := mfs["server_limit_admitted_total"]; mf != nil {
			admitted[service] = map[string]float64{}
			for _, m := range mf.GetMetric() {
				admitted[service][m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
		for name, mf := range mfs {
			exposed[name] = true
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					exposedLabels[l.GetName()] = true
				}
			}
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
				continue // the collectors of client_golang, listed as a group
			}
			f := families[name]
			if f == nil {
				f = &family{name: name, typ: strings.ToLower(mf.GetType().String()), help: mf.GetHelp()}
				families[name] = f
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if !slices.Contains(f.labels, l.GetName()) {
						f.labels = append(f.labels, l.GetName())
					}
					checkLabel(t, service, name, l)
				}
			}
		}
	}
	checkQueries(t, exposed, exposedLabels)
	checkPriorities(t, admitted)
	want := metricsTable(families)
	path := filepath.Join("..", "docs", "observability.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- metrics:begin -->\n", "<!-- metrics:end -->"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/observability.md lacks the %q … %q markers", begin, end)
	}
	got := string(doc[i+len(begin) : j])
	if *updateDocs {
		doc = append(append(append([]byte{}, doc[:i+len(begin)]...), want...), doc[j:]...)
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		got = want
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/observability.md lists other metrics than the services expose; go test ./e2e -run TestEveryInstanceServesItsMetrics -update (-want +got):\n%s", diff)
	}
}

// checkPriorities: the order's priority went with its work from hop to
// hop. The gateway marked the new order as new work; order-service's
// calls for it (GetUser, CheckAvailability) carried that to user-service
// and inventory-service over gRPC; the saga's commands reached the
// participants as admitted work.
func checkPriorities(t *testing.T, admitted map[string]map[string]float64) {
	t.Helper()
	for _, want := range []struct{ service, priority string }{
		{"order-service", "new"}, {"user-service", "new"}, {"inventory-service", "new"},
		{"order-service", "admitted"}, {"inventory-service", "admitted"}, {"shipping-service", "admitted"},
	} {
		if admitted[want.service][want.priority] < 1 {
			t.Errorf("%s let in no work of priority %s (server_limit_admitted_total: %v); the order's priority did not travel with it", want.service, want.priority, admitted[want.service])
		}
	}
	if _, ok := admitted["payment-service"]; ok {
		t.Error("payment-service has a server limit; it should have none (its work waits on the provider)")
	}
}

// checkLabel fails on a label value that is an id: every label is bounded.
func checkLabel(t *testing.T, service, metric string, l *dto.LabelPair) {
	t.Helper()
	v := l.GetValue()
	digits := 0
	for _, r := range v {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	switch l.GetName() {
	case "code", "le", "quantile", "version":
		return
	}
	if digits >= 4 && digits*2 >= len(v) {
		t.Errorf("%s: %s{%s=%q} looks like an id in a label", service, metric, l.GetName(), v)
	}
}

// metricsTable is the generated table of docs/observability.md.
func metricsTable(families map[string]*family) string {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, n := range names {
		f := families[n]
		slices.Sort(f.labels)
		f.labels = slices.DeleteFunc(f.labels, func(l string) bool { return l == "le" })
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", n, f.typ, strings.Join(f.labels, ", "), strings.ReplaceAll(f.help, "|", `\|`))
	}
	return b.String()
}

// targetLabels are the labels Prometheus adds when it scrapes (the
// shipped configuration's relabelling), beside those of the exposition.
var targetLabels = []string{"service", "instance_id", "version", "job", "instance", "le"}

// checkQueries parses every panel of the Grafana dashboards and every
// alert rule (the PromQL parser of Prometheus itself) and fails on a
// metric or a label that the running system does not expose.
func checkQueries(t *testing.T, exposed, labels map[string]bool) {
	t.Helper()
	exprs := map[string]string{} // where -> expression
	dashboards, err := filepath.Glob(filepath.Join("..", "deploy", "grafana", "dashboards", "*.json"))
	if err != nil || len(dashboards) < 4 {
		t.Fatalf("dashboards: %v %v, want at least four", dashboards, err)
	}
	for _, file := range dashboards {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Title  string `json:"title"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", d.Title, p.Title)
			}
			for i, tg := range p.Targets {
				exprs[fmt.Sprintf("%s / %s #%d", d.Title, p.Title, i+1)] = strings.ReplaceAll(tg.Expr, "$service", "gateway")
			}
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "rules", "junction.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	for where, e := range exprs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := vs.Name
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if name != "up" && !exposed[name] && !exposed[base] {
				t.Errorf("%s names %s, which no instance exposes", where, name)
			}
			for _, m := range vs.LabelMatchers {
				if m.Name != "__name__" && !labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
					t.Errorf("%s matches on label %q, which no metric has", where, m.Name)
				}
			}
			return nil
		})
	}
}
