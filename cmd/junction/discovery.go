package main

import (
	"context"
	"fmt"
	"net"
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

// checkDiscovery validates a --discovery value without connecting.
func checkDiscovery(raw string) error {
	if raw == "" || raw == "registry" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("discovery %q: %w", raw, err)
	}
	switch u.Scheme {
	case "dns":
		if strings.Trim(u.Path, "/") == "" {
			return fmt.Errorf("discovery %q: name the suffix, e.g. dns:///shop.svc.cluster.local", raw)
		}
		if _, err := dnsPorts(u.Query()); err != nil {
			return fmt.Errorf("discovery %q: %w", raw, err)
		}
	case "etcd":
		if u.Host == "" {
			return fmt.Errorf("discovery %q: name the endpoints, e.g. etcd://10.0.0.1:2379,10.0.0.2:2379/junction/services/", raw)
		}
	default:
		return fmt.Errorf("discovery %q: unknown scheme %q; registry (default), dns:///<suffix> or etcd://<endpoints>/<prefix>", raw, u.Scheme)
	}
	return nil
}

// openDiscovery opens the backend cfg names: the registry at RegistryURL
// (default), DNS (dns://[server:port]/<suffix>?http=8080&grpc=9090, the
// ports for services without SRV records) or etcd
// (etcd://host:port[,host:port]/<prefix>).
func openDiscovery(cfg serveConfig) (*discoveryBackend, error) {
	if cfg.Discovery == "" || cfg.Discovery == "registry" {
		c := discovery.NewClient(cfg.RegistryURL, nil)
		return &discoveryBackend{Source: c, Registrar: c, Close: func() {}}, nil
	}
	if err := checkDiscovery(cfg.Discovery); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Discovery)
	switch u.Scheme {
	case "dns":
		ports, _ := dnsPorts(u.Query())
		dc := dnsdisc.Config{Suffix: strings.Trim(u.Path, "/"), Ports: ports}
		if server := u.Host; server != "" {
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
	default: // etcd
		cli, err := etcddisc.Dial([]string{u.Host})
		if err != nil {
			return nil, err
		}
		d := etcddisc.New(cli, etcddisc.Config{Prefix: u.Path})
		return &discoveryBackend{Source: d, Registrar: d, Close: func() { cli.Close() }}, nil
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
