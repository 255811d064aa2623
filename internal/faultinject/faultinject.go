// Package faultinject puts Toxiproxy (embedded, v2.12.0) in front of a
// network edge: a TCP proxy per edge whose link can be slowed, cut, reset
// or blackholed while the system runs. Fault tests use it in-process, and
// `junction up --fault-links` puts one in front of every instance; nothing
// else goes through it.
package faultinject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Toxic is one fault on a proxy's link (Toxiproxy's names and units):
//
//	latency     {"latency": ms, "jitter": ms}
//	timeout     {"timeout": ms}  0: data is dropped and the connection held (a blackhole)
//	reset_peer  {"timeout": ms}  connections reset (TCP RST) after ms
//	bandwidth   {"rate": KB/s}
//	slicer, limit_data, slow_close as in Toxiproxy's documentation
type Toxic struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Stream is "downstream" (server to client, the default) or "upstream".
	Stream string `json:"stream,omitempty"`
	// Toxicity is the share of connections affected; 1 when zero.
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Server holds proxies. It is safe for concurrent use.
type Server struct {
	api *toxiproxy.ApiServer // holds the proxies, by name
}

// New returns a server with no proxy; it logs nothing.
func New() *Server {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	api.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	return &Server{api: api}
}

// Proxy starts a proxy named name on a free loopback port, forwarding to
// upstream (host:port).
func (s *Server) Proxy(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(s.api, name, "127.0.0.1:0", upstream)
	if err := s.api.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	return &Proxy{p: p, addr: p.Listen}, nil
}

// Handler serves Toxiproxy's own HTTP API over this server's proxies
// (GET /proxies, POST /proxies/{name}/toxics, …), so its client package
// and toxiproxy-cli drive them; `junction chaos link` does.
func (s *Server) Handler() http.Handler { return s.api.Routes() }

// Close stops every proxy.
func (s *Server) Close() {
	s.api.Collection.Clear()
}

// Proxy is one edge.
type Proxy struct {
	p    *toxiproxy.Proxy
	addr string
}

// Addr is where clients connect instead of the upstream.
func (p *Proxy) Addr() string { return p.addr }

// Add puts a toxic on the link; new and open connections get it.
func (p *Proxy) Add(t Toxic) error {
	if t.Toxicity == 0 {
		t.Toxicity = 1
	}
	if t.Stream == "" {
		t.Stream = "downstream"
	}
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("toxic %s on %s: %w", t.Name, p.p.Name, err)
	}
	return nil
}

// Remove takes the toxic named name off the link.
func (p *Proxy) Remove(name string) error {
	if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("toxic %s on %s: %w", name, p.p.Name, err)
	}
	return nil
}

// Disable cuts the edge: the listener closes and open connections drop,
// so new connections are refused until Enable.
func (p *Proxy) Disable() { p.p.Stop() }

// Enable opens the edge again on the same address.
func (p *Proxy) Enable() error {
	p.p.Listen = p.addr
	return p.p.Start()
}
