package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// OpsConfig is where the ops dashboard's API finds what it shows.
type OpsConfig struct {
	// Source lists the instances of every service.
	Source discovery.Source
	// Traces is the trace store's base URL (junction up's), "" when there
	// is none.
	Traces string
	// Control is junction up's operations API (kill, stop, pause and
	// resume an instance), "" when not run by junction up.
	Control string
	// Transport reaches the instances and Control (mTLS with the
	// gateway's certificate); http.DefaultTransport when nil.
	Transport http.RoundTripper
}

// ops answers the ops dashboard (/ops) under /api/admin/ops/, to
// administrators only; every action is logged with who did it.
//
//	GET  /api/admin/ops/instances                 every service's instances, from discovery
//	GET  /api/admin/ops/metrics                   each instance's counters and gauges, scraped now
//	GET  /api/admin/ops/graph?window=60s          the calls between services (trace store)
//	GET  /api/admin/ops/traces, /traces/{id}, /orders/{id}/traces   (trace store)
//	GET  /api/admin/ops/provider                  the payment provider's faults
//	PUT  /api/admin/ops/provider                  set them (as junction chaos provider)
//	POST /api/admin/ops/instances/{id}/{action}   kill, stop, pause, resume (as junction chaos)
//	GET  /api/admin/ops/links                     the links of junction up --fault-links
//	PUT  /api/admin/ops/links/{name}              set a link's latency, blackhole, reset, down (as junction chaos link)
type ops struct {
	cfg OpsConfig
	// client reaches Control and the provider; ports, each instance's
	// own port (a gateway's plainly).
	client *http.Client
	ports  discovery.Clients
	log    *slog.Logger
	traces *httputil.ReverseProxy
}

// ServeOps has the gateway answer /api/admin/ops/ with cfg; call it before
// Handler.
func (g *Gateway) ServeOps(cfg OpsConfig) {
	client := &http.Client{Transport: cfg.Transport, Timeout: 3 * time.Second}
	o := &ops{cfg: cfg, log: g.log, client: client, ports: discovery.Clients{Secure: client, Plain: &http.Client{Timeout: 3 * time.Second}}}
	if cfg.Traces != "" {
		target, err := neturl.Parse(cfg.Traces)
		if err == nil {
			o.traces = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.URL.Path = "/v1" + strings.TrimPrefix(pr.In.URL.Path, "/api/admin/ops")
				pr.Out.Header.Del("Authorization")
			}}
		}
	}
	g.ops = o
}

func (o *ops) routes(mux *http.ServeMux, signedIn func(http.Handler) http.Handler) {
	admin := func(h http.HandlerFunc) http.Handler {
		return signedIn(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, _ := auth.FromContext(r.Context()); !p.IsAdmin() {
				rest.Error(w, r, o.log, fault.New(fault.Forbidden, "the ops dashboard is for administrators"))
				return
			}
			h(w, r)
		}))
	}
	mux.Handle("GET /api/admin/ops/instances", admin(o.instances))
	mux.Handle("GET /api/admin/ops/metrics", admin(o.metrics))
	mux.Handle("GET /api/admin/ops/graph", admin(o.trace))
	mux.Handle("GET /api/admin/ops/traces", admin(o.trace))
	mux.Handle("GET /api/admin/ops/traces/{id}", admin(o.trace))
	mux.Handle("GET /api/admin/ops/orders/{id}/traces", admin(o.trace))
	mux.Handle("GET /api/admin/ops/provider", admin(o.provider))
	mux.Handle("PUT /api/admin/ops/provider", admin(o.provider))
	mux.Handle("POST /api/admin/ops/instances/{id}/{action}", admin(o.act))
	mux.Handle("GET /api/admin/ops/links", admin(o.act))
	mux.Handle("PUT /api/admin/ops/links/{name}", admin(o.act))
}

// every lists the instances of every service, in the order of the
// services' names.
func (o *ops) every(ctx context.Context) []discovery.Instance {
	names := services.All()
	views := make([]discovery.View, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			views[i], _ = o.cfg.Source.Watch(ctx, name, discovery.View{})
		})
	}
	wg.Wait()
	var out []discovery.Instance
	for _, v := range views {
		out = append(out, v.Instances...)
	}
	return out
}

func (o *ops) instances(w http.ResponseWriter, r *http.Request) {
	rest.JSON(w, http.StatusOK, map[string]any{"instances": o.every(r.Context()), "control": o.cfg.Control != "", "traces": o.cfg.Traces != ""})
}

// shown are the metric families the dashboard reads: counters and gauges
// of the policies, the admission of work, the messaging and the sagas.
var shown = []string{"gateway_", "resilience_", "outbox_", "messaging_process_total", "messaging_publish_total", "messaging_dead_letters_total",
	"jetstream_consumer_", "saga_instances", "saga_ended_total", "saga_step_events_total", "orders_total", "http_server_requests_total",
	"grpc_client_handled_total", "inbox_duplicates_skipped_total", "server_limit", "order_admission_", "orders_refused_total"}

// sample is one series of a scrape.
type sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

type scrape struct {
	ID      string   `json:"id"`
	Service string   `json:"service"`
	Ready   bool     `json:"ready"`
	Error   string   `json:"error,omitempty"`
	Samples []sample `json:"samples"`
}

func (o *ops) metrics(w http.ResponseWriter, r *http.Request) {
	insts := o.every(r.Context())
	out := make([]scrape, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Go(func() { out[i] = o.scrape(r.Context(), in) })
	}
	wg.Wait()
	rest.JSON(w, http.StatusOK, map[string]any{"at": time.Now().UTC(), "instances": out})
}

// scrape reads in's /metrics and /readyz.
func (o *ops) scrape(ctx context.Context, in discovery.Instance) scrape {
	s := scrape{ID: in.ID, Service: in.Service, Samples: []sample{}}
	addr := in.Endpoints[discovery.EndpointHTTP]
	if addr == "" {
		s.Error = "no HTTP endpoint"
		return s
	}
	client := o.ports.For(in)
	get := func(url string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		return client.Do(req)
	}
	if resp, err := get("http://" + addr + "/readyz"); err == nil {
		s.Ready = resp.StatusCode == http.StatusOK
		resp.Body.Close()
	}
	resp, err := get("http://" + addr + "/metrics")
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.Error = "metrics: " + resp.Status
		return s
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		s.Error = "metrics: " + err.Error()
		return s
	}
	for name, f := range fams {
		if !slices.ContainsFunc(shown, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			s.Samples = append(s.Samples, sample{Name: name, Labels: labels, Value: v})
		}
	}
	return s
}

func (o *ops) trace(w http.ResponseWriter, r *http.Request) {
	if o.traces == nil {
		rest.Error(w, r, o.log, fault.New(fault.NotFound, "no trace store: traces go to a collector of their own (OTEL_EXPORTER_OTLP_ENDPOINT)"))
		return
	}
	o.traces.ServeHTTP(w, r)
}

// provider reads or sets the payment provider's faults, on every instance.
func (o *ops) provider(w http.ResponseWriter, r *http.Request) {
	v, err := o.cfg.Source.Watch(r.Context(), services.PaymentProvider, discovery.View{})
	if err != nil || len(v.Instances) == 0 {
		rest.Error(w, r, o.log, fault.New(fault.Unavailable, "no payment provider is registered"))
		return
	}
	body, ok := o.faults(w, r)
	if !ok {
		return
	}
	var answer []byte
	for _, in := range v.Instances {
		status, _, b, err := o.send(r, "http://"+in.Endpoints[discovery.EndpointHTTP]+"/v1/admin/faults", body)
		if err != nil {
			rest.Error(w, r, o.log, fault.Wrap(fault.Unavailable, err, "%s cannot be reached", in.ID))
			return
		}
		if status != http.StatusOK {
			rest.Error(w, r, o.log, fault.New(fault.Invalid, "%s: %s", in.ID, bytes.TrimSpace(b)))
			return
		}
		answer = b
		if r.Method == http.MethodGet {
			break // they all have the same
		}
	}
	if r.Method == http.MethodPut {
		p, _ := auth.FromContext(r.Context())
		o.log.InfoContext(r.Context(), "ops: payment provider faults set", "by", p.Username, "faults", string(bytes.TrimSpace(body)))
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(answer)
}

// act forwards to junction up's control API: an instance's signal, the
// links' faults.
func (o *ops) act(w http.ResponseWriter, r *http.Request) {
	if o.cfg.Control == "" {
		rest.Error(w, r, o.log, fault.New(fault.NotFound, "instances and links can be broken from here only in a system run by junction up"))
		return
	}
	body, ok := o.faults(w, r)
	if !ok {
		return
	}
	status, ctype, answer, err := o.send(r, o.cfg.Control+"/v1"+strings.TrimPrefix(r.URL.EscapedPath(), "/api/admin/ops"), body)
	if err != nil {
		rest.Error(w, r, o.log, fault.Wrap(fault.Unavailable, err, "junction up's control API cannot be reached"))
		return
	}
	p, _ := auth.FromContext(r.Context())
	switch {
	case r.PathValue("id") != "":
		o.log.InfoContext(r.Context(), "ops: instance action", "by", p.Username, "status", status, "instance", r.PathValue("id"), "action", r.PathValue("action"))
	case r.PathValue("name") != "":
		o.log.InfoContext(r.Context(), "ops: link faults set", "by", p.Username, "status", status, "link", r.PathValue("name"), "faults", string(bytes.TrimSpace(body)))
	}
	w.Header().Set("Content-Type", ctype) // a problem document's, on a refusal
	w.WriteHeader(status)
	_, _ = w.Write(answer)
}

// faults reads the body of a PUT (faults to set: a small JSON object); a
// GET or POST has none.
func (o *ops) faults(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPut {
		return nil, true
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		rest.Error(w, r, o.log, fault.New(fault.TooLarge, "the faults are a small JSON object"))
		return nil, false
	}
	return body, true
}

// send makes r's call, with body, to url and returns the answer: its
// status, content type and body.
func (o *ops) send(r *http.Request, url string, body []byte) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Content-Type"), answer, err
}
