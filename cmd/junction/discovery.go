package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/dnsdisc"
	"github.com/junction-go/junction/discovery/etcddisc"
)

// discoveryBackend is where a process finds the others and, where the
// backend has one, how it registers itself.
type discoveryBackend struct {
	Source discovery.Source
	// Registrar is nil where the platform registers instances (DNS).
	Registrar discovery.Registrar
	Close     func()
}

// discoverySpec is a parsed --discovery value.
type discoverySpec struct {
	kind string // "registry", "dns" or "etcd"
	// dns: the suffix and the ports of services without SRV records, and
	// the server to ask ("" for the system's resolver).
	dns    dnsdisc.Config
	server string
	// etcd: the endpoints (comma separated) and the key prefix.
	endpoints, prefix string
}

// parseDiscovery reads a --discovery value: "" or "registry" (the
// registry at --registry), dns://[server:port]/<suffix>?http=8080&grpc=9090
// or etcd://host:port[,host:port]/<prefix>. It connects to nothing.
func parseDiscovery(raw string) (discoverySpec, error) {
	if raw == "" || raw == "registry" {
		return discoverySpec{kind: "registry"}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return discoverySpec{}, fmt.Errorf("discovery %q: %w", raw, err)
	}
	switch u.Scheme {
	case "dns":
		suffix := strings.Trim(u.Path, "/")
		if suffix == "" {
			return discoverySpec{}, fmt.Errorf("discovery %q: name the suffix, e.g. dns:///shop.svc.cluster.local", raw)
		}
		ports, err := dnsPorts(u.Query())
		if err != nil {
			return discoverySpec{}, fmt.Errorf("discovery %q: %w", raw, err)
		}
		return discoverySpec{kind: "dns", dns: dnsdisc.Config{Suffix: suffix, Ports: ports}, server: u.Host}, nil
	case "etcd":
		if u.Host == "" {
			return discoverySpec{}, fmt.Errorf("discovery %q: name the endpoints, e.g. etcd://10.0.0.1:2379,10.0.0.2:2379/junction/services/", raw)
		}
		return discoverySpec{kind: "etcd", endpoints: u.Host, prefix: u.Path}, nil
	}
	return discoverySpec{}, fmt.Errorf("discovery %q: unknown scheme %q; registry (default), dns:///<suffix> or etcd://<endpoints>/<prefix>", raw, u.Scheme)
}

// openDiscovery opens the backend cfg names (see parseDiscovery).
func openDiscovery(cfg serveConfig) (*discoveryBackend, error) {
	spec := cfg.Discovery.parsed
	switch spec.kind {
	case "dns":
		dc := spec.dns
		if server := spec.server; server != "" {
			dc.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			}}
		}
		src, err := dnsdisc.New(dc)
		if err != nil {
			return nil, err
		}
		return &discoveryBackend{Source: src, Close: func() {}}, nil
	case "etcd":
		cli, err := etcddisc.Dial([]string{spec.endpoints})
		if err != nil {
			return nil, err
		}
		d := etcddisc.New(cli, etcddisc.Config{Prefix: spec.prefix})
		return &discoveryBackend{Source: d, Registrar: d, Close: func() { cli.Close() }}, nil
	default:
		c := discovery.NewClient(cfg.Discovery.RegistryURL, &http.Client{Transport: cfg.transport()})
		return &discoveryBackend{Source: c, Registrar: c, Close: func() {}}, nil
	}
}

func dnsPorts(q url.Values) (map[string]int, error) {
	ports := map[string]int{}
	for name, vals := range q {
		p, err := strconv.Atoi(vals[0])
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port %s=%q: want 1-65535", name, vals[0])
		}
		ports[name] = p
	}
	return ports, nil
}
