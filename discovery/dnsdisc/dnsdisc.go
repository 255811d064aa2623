// Package dnsdisc finds service instances in DNS, the way Kubernetes
// publishes the pods behind a headless service: one SRV record per pod and
// named port (_http._tcp.<service>.<suffix>, _grpc._tcp.…), each naming a
// host with an A record. Where a service has no SRV records, its A records
// are used with the ports set in Config.Ports.
//
// DNS has no watch: a Source polls every Config.Interval and answers a
// Watch when the set of instances changes. Registration is the platform's
// job (Kubernetes adds a pod to its service once it is ready), so there is
// no Registrar here.
package dnsdisc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/junction-go/junction/discovery"
)

// Config says how names are built and looked up.
type Config struct {
	// Suffix follows the service name: "shop.svc.cluster.local" looks up
	// "order-service.shop.svc.cluster.local". Required.
	Suffix string
	// Endpoints are the named ports looked up as SRV records; default
	// http, grpc and nats.
	Endpoints []string
	// Ports are used for services without SRV records: each address of
	// the service's A records gets these endpoints. Empty: no fallback.
	Ports map[string]int
	// Resolver answers the lookups; net.DefaultResolver when nil.
	Resolver *net.Resolver
	// Interval between lookups while watching; default 5 s.
	Interval time.Duration
	// MaxWait bounds one Watch that sees no change; default 30 s.
	MaxWait time.Duration
}

// Source is a discovery.Source over DNS. It is safe for concurrent use.
type Source struct {
	cfg Config

	mu    sync.Mutex
	views map[string]discovery.View // the last answer per service
}

var _ discovery.Source = (*Source)(nil)

// New returns a Source for cfg.
func New(cfg Config) (*Source, error) {
	cfg.Suffix = strings.Trim(cfg.Suffix, ".")
	if cfg.Suffix == "" {
		return nil, errors.New("dns discovery: a suffix is required, e.g. shop.svc.cluster.local")
	}
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{discovery.EndpointHTTP, discovery.EndpointGRPC, discovery.EndpointNATS}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	return &Source{cfg: cfg, views: map[string]discovery.View{}}, nil
}

// Lookup returns the instances of service as DNS has them now.
func (s *Source) Lookup(ctx context.Context, service string) (discovery.View, error) {
	name := service + "." + s.cfg.Suffix
	byHost := map[string]*discovery.Instance{}
	instance := func(id string) *discovery.Instance {
		inst, ok := byHost[id]
		if !ok {
			inst = &discovery.Instance{ID: id, Service: service, Endpoints: map[string]string{}}
			byHost[id] = inst
		}
		return inst
	}
	anySRV := false
	for _, ep := range s.cfg.Endpoints {
		_, srvs, err := s.cfg.Resolver.LookupSRV(ctx, ep, "tcp", name)
		if notFound(err) {
			continue
		}
		if err != nil {
			return discovery.View{}, fmt.Errorf("dns discovery %s: %w", service, err)
		}
		anySRV = anySRV || len(srvs) > 0
		for _, srv := range srvs {
			target := strings.TrimSuffix(srv.Target, ".")
			addrs, err := s.cfg.Resolver.LookupHost(ctx, target)
			if notFound(err) {
				continue // the pod went away between the two answers
			}
			if err != nil {
				return discovery.View{}, fmt.Errorf("dns discovery %s: %s: %w", service, target, err)
			}
			slices.Sort(addrs)
			inst := instance(target)
			inst.Endpoints[ep] = net.JoinHostPort(addrs[0], strconv.Itoa(int(srv.Port)))
		}
	}
	if !anySRV && len(s.cfg.Ports) > 0 {
		addrs, err := s.cfg.Resolver.LookupHost(ctx, name)
		if err != nil && !notFound(err) {
			return discovery.View{}, fmt.Errorf("dns discovery %s: %w", service, err)
		}
		for _, a := range addrs {
			inst := instance(a)
			for ep, port := range s.cfg.Ports {
				inst.Endpoints[ep] = net.JoinHostPort(a, strconv.Itoa(port))
			}
		}
	}
	v := discovery.View{Service: service, Epoch: "dns", Instances: make([]discovery.Instance, 0, len(byHost))}
	for _, inst := range byHost {
		v.Instances = append(v.Instances, *inst)
	}
	slices.SortFunc(v.Instances, func(a, b discovery.Instance) int { return strings.Compare(a.ID, b.ID) })
	return s.revise(v), nil
}

// revise numbers v: the same instances as last time keep the revision, a
// change takes the next one.
func (s *Source) revise(v discovery.View) discovery.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.views[v.Service]
	switch {
	case !ok:
		v.Revision = 1
	case sameInstances(last.Instances, v.Instances):
		v.Revision = last.Revision
	default:
		v.Revision = last.Revision + 1
	}
	s.views[v.Service] = v
	return v
}

// Watch polls DNS every Interval until service's instances differ from
// prev's, or MaxWait passes, and returns the current view.
func (s *Source) Watch(ctx context.Context, service string, prev discovery.View) (discovery.View, error) {
	deadline := time.Now().Add(s.cfg.MaxWait)
	for {
		v, err := s.Lookup(ctx, service)
		if err != nil || prev.Service == "" || v.Epoch != prev.Epoch || v.Revision != prev.Revision || !time.Now().Before(deadline) {
			return v, err
		}
		t := time.NewTimer(min(s.cfg.Interval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return discovery.View{}, ctx.Err()
		case <-t.C:
		}
	}
}

func notFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func sameInstances(a, b []discovery.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y discovery.Instance) bool {
		return x.ID == y.ID && maps.Equal(x.Endpoints, y.Endpoints)
	})
}
