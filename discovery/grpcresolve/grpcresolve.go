// Package grpcresolve is client-side discovery for gRPC: a resolver for
// targets "junction:///<service>" that feeds grpc-go the live instances of a
// service from a discovery.Resolver as they come and go, and a
// power-of-two-choices balancer over them (P2C; ServiceConfig selects it).
package grpcresolve

import (
	"google.golang.org/grpc/resolver"

	"github.com/junction-go/junction/discovery"
)

// Scheme is the target scheme this package resolves.
const Scheme = "junction"

// ServiceConfig balances calls over every resolved instance by the power
// of two choices (fewer calls in flight wins).
const ServiceConfig = `{"loadBalancingConfig":[{"` + P2C + `":{}}]}`

// RoundRobin is the service config of grpc-go's round_robin, for callers
// that want it.
const RoundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Target returns the gRPC target of service.
func Target(service string) string { return Scheme + ":///" + service }

// NewBuilder returns a resolver builder backed by r; pass it to
// grpc.WithResolvers.
func NewBuilder(r *discovery.Resolver) resolver.Builder { return builder{r} }

type builder struct{ r *discovery.Resolver }

func (builder) Scheme() string { return Scheme }

func (b builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := target.Endpoint()
	cancel := b.r.Subscribe(service, func(v discovery.View) {
		addrs := make([]resolver.Address, 0, len(v.Instances))
		for _, inst := range v.Instances {
			if a := inst.Endpoints[discovery.EndpointGRPC]; a != "" {
				addrs = append(addrs, resolver.Address{Addr: a})
			}
		}
		// An empty list is reported too: grpc-go then fails calls fast with
		// UNAVAILABLE instead of using instances that are gone.
		_ = cc.UpdateState(resolver.State{Addresses: addrs})
	})
	return &res{cancel: cancel}, nil
}

type res struct{ cancel func() }

func (*res) ResolveNow(resolver.ResolveNowOptions) {}
func (r *res) Close()                              { r.cancel() }
