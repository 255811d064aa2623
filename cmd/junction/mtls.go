package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/telemetry"
)

// transport is how this process calls other processes over HTTP: mTLS
// with its certificate, or plaintext without one.
func (c *serveConfig) transport() http.RoundTripper {
	if c.ident == nil {
		return http.DefaultTransport
	}
	return c.ident.Transport()
}

// grpcCredentials dial service with mTLS (accepting only service's
// certificate), or plaintext without a certificate.
func (c *serveConfig) grpcCredentials(service string) (grpc.DialOption, error) {
	if c.ident == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	creds, err := c.ident.GRPCCredentials(service)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(creds), nil
}

// grpcServerOptions are a gRPC server's: telemetry, and with a
// certificate mTLS and the service's row of the call table.
func (c *serveConfig) grpcServerOptions() ([]grpc.ServerOption, error) {
	opts := telemetry.GRPCServerOptions(c.metrics)
	if c.limit != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(c.limit.UnaryServerInterceptor()))
	}
	if c.ident == nil {
		return opts, nil
	}
	return append(c.policy.ServerOptions(c.ident), opts...), nil
}

// policyOf is service's rows of services.Calls as a policy
// (services.AnyCaller is identity.Any, TestCallTableCompiles).
func policyOf(service string) (*identity.Policy, error) {
	var rules []identity.Rule
	for _, call := range services.Calls(service) {
		rules = append(rules, identity.Rule{Pattern: call.Pattern, Callers: call.Callers})
	}
	p, err := identity.NewPolicy(rules)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", service, err)
	}
	return p, nil
}

// mayRegister lets an identity register its own service's instances
// only, and the operator any.
func mayRegister(r *http.Request, service string) bool {
	id, ok := identity.Caller(r)
	if !ok {
		return false
	}
	name := identity.Name(id)
	return name == service || name == services.Operator
}

// embeddedBrokerTLS is the embedded broker's TLS: its certificate
// (renewed with the files), and only clients with a certificate of the
// trust domain.
func embeddedBrokerTLS(src *identity.Source) (*tls.Config, error) {
	bundle, err := src.GetX509BundleForTrustDomain(identity.TrustDomain)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range bundle.X509Authorities() {
		pool.AddCert(c)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      pool,
		GetCertificate: tlsconfig.GetCertificate(src),
	}, nil
}

// brokerRouteTLS is the TLS of the connections between the nodes of an
// embedded broker cluster, both ways: each node presents its certificate
// and takes only a peer that proves the broker's identity.
func brokerRouteTLS(src *identity.Source) (*tls.Config, error) {
	id, err := identity.ID(services.Broker)
	if err != nil {
		return nil, err
	}
	// The client half (a node dials its routes): the peer's SPIFFE ID is
	// checked, not a host name. The server half: a certificate to present,
	// and one required of every node that dials in.
	c := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(id))
	server := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(id))
	c.GetCertificate, c.ClientAuth = server.GetCertificate, server.ClientAuth
	return c, nil
}

// brokerUsers are the embedded broker's users, one per identity (the
// certificate's SPIFFE ID is the user name): each publishes to its own
// topics only (events.Publishers), follows live only what
// events.LiveFollowers names, and uses JetStream's API for its streams
// and consumers but cannot delete or purge them. The operator may do
// anything (junction bench bus, nats CLI).
func brokerUsers() ([]*server.User, error) {
	jetstream := []string{"$JS.API.INFO", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*", "$JS.API.STREAM.INFO.*",
		"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>", "$JS.FC.>"}
	var users []*server.User
	for _, service := range services.All() {
		if service == services.Broker || service == services.PaymentProvider {
			continue
		}
		id, err := identity.ID(service)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.User{Username: id.String(), Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: append(slices.Clone(events.Publishers[service]), jetstream...)},
			Subscribe: &server.SubjectPermission{Allow: append([]string{"_INBOX.>"}, events.LiveFollowers[service]...)},
		}})
	}
	op, err := identity.ID(services.Operator)
	if err != nil {
		return nil, err
	}
	return append(users, &server.User{Username: op.String()}), nil
}

// brokerTLS is how this process connects to a NATS broker: with its
// certificate where it has one and the broker is the embedded one (found
// in the registry, or named with --broker-tls), plaintext otherwise. The
// other brokers' URLs say how to reach them (amqps://…).
func (c *serveConfig) brokerTLS() *tls.Config {
	if c.ident == nil || (c.Broker.URL != "" && !c.Broker.TLS) {
		return nil
	}
	return c.ident.ClientConfig()
}
