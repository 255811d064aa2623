// Package gateway is Junction's single public entry: it routes /api/... to
// the owning service, found through the registry (server-side discovery,
// balanced round robin over live instances), checks access tokens before
// anything reaches a service, and answers with a problem document when no
// instance is there (503), an upstream cannot be reached (502) or takes too
// long (504).
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// Limits of a proxied request.
const (
	MaxBody         = 1 << 20
	UpstreamTimeout = 30 * time.Second
)

// Gateway proxies to services. It is safe for concurrent use.
type Gateway struct {
	resolver *discovery.Resolver
	verifier *auth.Verifier
	limits   Limits
	log      *slog.Logger
	proxy    *httputil.ReverseProxy

	inFlight    atomic.Int64
	rateLimited atomic.Int64
	shed        atomic.Int64
}

// Stats counts the gateway's policy actions.
type Stats struct {
	RateLimited int64 // answered 429
	Shed        int64 // answered 503 for load
}

// Stats returns the counts so far.
func (g *Gateway) Stats() Stats {
	return Stats{RateLimited: g.rateLimited.Load(), Shed: g.shed.Load()}
}

type targetKey struct{}

// New returns a gateway that finds services through resolver, verifies
// tokens with verifier and enforces limits.
func New(resolver *discovery.Resolver, verifier *auth.Verifier, limits Limits, log *slog.Logger) *Gateway {
	g := &Gateway{resolver: resolver, verifier: verifier, limits: limits, log: log}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			addr := pr.In.Context().Value(targetKey{}).(string)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// The service works within what is left of the gateway's time.
			rest.SetDeadline(pr.Out.Header, pr.In.Context())
		},
		Transport:    NewTransport(),
		ErrorHandler: g.proxyError,
		ModifyResponse: func(resp *http.Response) error {
			// The gateway has set the request id on its answer already.
			resp.Header.Del(rest.RequestIDHeader)
			return nil
		},
	}
	return g
}

// NewTransport returns the transport the gateway uses upstream: many idle
// connections per instance (the gateway is the busiest client of all) and
// quick failure when an instance is gone.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: UpstreamTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// forward sends r to a live instance of service.
func (g *Gateway) forward(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), UpstreamTimeout)
		defer cancel()
		addr, err := g.resolver.Pick(ctx, service, discovery.EndpointHTTP)
		if err != nil {
			g.log.WarnContext(ctx, "no upstream", "service", service, "err", err)
			rest.Error(w, r, g.log, fault.Wrap(fault.Unavailable, err, "%s is unavailable; try again shortly", service))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, targetKey{}, addr)))
	})
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	service := r.Context().Value(targetKey{})
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		rest.Error(w, r, g.log, fault.New(fault.TooLarge, "the body is larger than %d bytes", MaxBody))
	case errors.Is(err, context.DeadlineExceeded):
		g.log.WarnContext(r.Context(), "upstream timed out", "upstream", service, "err", err)
		rest.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream_timeout", "the service did not answer in time")
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
	default:
		g.log.WarnContext(r.Context(), "upstream failed", "upstream", service, "err", err)
		rest.WriteProblem(w, r, http.StatusBadGateway, "bad_gateway", "the service could not be reached")
	}
}
