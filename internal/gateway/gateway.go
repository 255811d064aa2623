// Package gateway is Junction's single public entry: it routes /api/... to
// the owning service, found through the registry (server-side discovery,
// balanced over live instances by discovery.Balancer: the fewer calls in
// flight of two drawn at random, failing instances ejected), checks access
// tokens before
// anything reaches a service, and answers with a problem document when no
// instance is there (503), an upstream cannot be reached (502) or takes too
// long (504).
package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/retrypolicy"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry"
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
	throttled   atomic.Int64
	fallbacks   atomic.Int64
	retries     atomic.Int64
	// retriesRefused counts retries the budget did not allow.
	retriesRefused atomic.Int64
	catalogue      *lastGood
	room           *orderRoom
	live           *Live
	ops            *ops
}

// Stats counts the gateway's policy actions.
type Stats struct {
	RateLimited int64 // answered 429
	Shed        int64 // answered 503 for load
	Throttled   int64 // new orders answered 503 as order-service was refusing them
	Fallbacks   int64 // answered from a last good copy
	Retries     int64 // attempts sent again
	// RetriesRefused are retries the retry budget did not allow.
	RetriesRefused int64
}

// Stats returns the counts so far.
func (g *Gateway) Stats() Stats {
	return Stats{RateLimited: g.rateLimited.Load(), Shed: g.shed.Load(), Throttled: g.throttled.Load(), Fallbacks: g.fallbacks.Load(), Retries: g.retries.Load(), RetriesRefused: g.retriesRefused.Load()}
}

// ReportRefusals logs, once a second in which the gateway refused
// requests itself, one line at info with how many for each reason, until
// ctx is done. A refusal's own lines are at debug (and the access log's
// sampled: rest.AccessLog): under overload they come by the thousand.
func (g *Gateway) ReportRefusals(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := g.Stats()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := g.Stats()
		throttled, shed, limited := st.Throttled-last.Throttled, st.Shed-last.Shed, st.RateLimited-last.RateLimited
		last = st
		if throttled+shed+limited == 0 {
			continue
		}
		attrs := []any{"throttled_new_orders", throttled, "shed", shed, "rate_limited", limited}
		if g.limits.MaxInFlight > 0 { // counted only where requests may be shed
			attrs = append(attrs, "in_flight", g.inFlight.Load(), "max_in_flight", g.limits.MaxInFlight)
		}
		g.log.Info("requests refused in the last second", attrs...)
	}
}

type serviceKey struct{}

// ServeLive has the gateway answer GET /ws with l; call it before Handler.
func (g *Gateway) ServeLive(l *Live) { g.live = l }

// New returns a gateway that finds services through resolver, verifies
// tokens with verifier and enforces limits. With upstream set, it calls
// the services with mTLS (its certificate, theirs checked).
func New(resolver *discovery.Resolver, verifier *auth.Verifier, limits Limits, upstream *tls.Config, log *slog.Logger) *Gateway {
	g := &Gateway{resolver: resolver, verifier: verifier, limits: limits, log: log, room: newOrderRoom()}
	g.catalogue = &lastGood{counter: &g.fallbacks}
	transport, scheme := NewTransport(), "http"
	if upstream != nil {
		transport.TLSClientConfig, scheme = upstream, "https"
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The transport puts a live instance's address in place of the
			// service's name.
			pr.Out.URL.Scheme = scheme
			pr.Out.URL.Host = pr.In.Context().Value(serviceKey{}).(string)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// The service works within what is left of the gateway's time,
			// and refuses new work before what the shop has taken.
			rest.SetDeadline(pr.Out.Header, pr.In.Context())
			resilience.SetPriority(pr.Out.Header, priorityOf(pr.In))
			if service := pr.In.Context().Value(serviceKey{}); service == services.Order && limits.ThrottleNewOrders {
				g.room.tell(pr.Out.Header)
			} else {
				pr.Out.Header.Del(services.RefusedHeader)
			}
		},
		Transport:    newRetryingTransport(telemetry.ClientTransport(transport), &discovery.Balancer{Resolver: resolver}, &g.retries, &g.retriesRefused, log),
		BufferPool:   copyBuffers{},
		ErrorHandler: g.proxyError,
		ModifyResponse: func(resp *http.Response) error {
			// The gateway has set the request id on its answer already.
			resp.Header.Del(rest.RequestIDHeader)
			// Order admission's room is the gateway's to know, not the
			// client's.
			if resp.Request.Context().Value(serviceKey{}) == services.Order && limits.ThrottleNewOrders {
				g.room.heard(resp.Request.URL.Host, resp.Header, isNewOrder(resp.Request), time.Now())
			}
			resp.Header.Del(services.RoomHeader)
			return nil
		},
	}
	return g
}

// copyBuffers lends the proxy the buffers it copies answers through:
// without a pool it allocates 32 KiB per request, and at 2,000 requests/s
// the garbage collector's share of the gateway's CPU was 17 %.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

// requestTimeout is the time the gateway gives a request, retries
// included; the deadline travels to the service.
func (g *Gateway) requestTimeout() time.Duration {
	if g.limits.RequestTimeout > 0 {
		return g.limits.RequestTimeout
	}
	return UpstreamTimeout
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

// forward sends r to a live instance of service. A small body is held in
// memory so the request can be sent again to another instance if the first
// cannot be reached.
func (g *Gateway) forward(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), g.requestTimeout())
		defer cancel()
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		if r.ContentLength > 0 && r.ContentLength <= replayableBody {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				g.proxyError(w, r, err)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, serviceKey{}, service)))
	})
}

// replayableBody is the largest body the gateway keeps to send again.
const replayableBody = 64 << 10

// Retries at the gateway: an attempt that failed is sent again (to an
// instance not tried yet, when there is one) only when that is safe — the
// request never reached the instance, or it is idempotent (GET, HEAD, or
// it carries an Idempotency-Key) — after 10 ms doubling to 100 ms with
// ±25 % jitter, at most 3 attempts in all, and only while retries are at
// most RetryBudget of the attempts in flight (or fewer than 3), so a
// failing service does not get the gateway's load multiplied.
const (
	MaxAttempts = 3
	RetryBudget = 0.2
	// retryMinConcurrency retries may be in flight whatever the budget
	// says, so a quiet gateway still retries (Envoy's default too).
	retryMinConcurrency = 3
	retryBackoff        = 10 * time.Millisecond
	retryMax            = 100 * time.Millisecond
)

// retryingTransport sends a request to a live instance of its service
// under the gateway's retry policy (failsafe-go).
type retryingTransport struct {
	base     http.RoundTripper
	balancer *discovery.Balancer
	retry    failsafe.Executor[*http.Response]
}

func newRetryingTransport(base http.RoundTripper, balancer *discovery.Balancer, retries, refused *atomic.Int64, log *slog.Logger) *retryingTransport {
	rp := retrypolicy.NewBuilder[*http.Response]().
		HandleIf(func(_ *http.Response, err error) bool {
			var final finalError
			return err != nil && !errors.As(err, &final)
		}).
		WithMaxAttempts(MaxAttempts).
		WithBackoff(retryBackoff, retryMax).
		WithJitterFactor(0.25).
		WithBudget(budget.NewBuilder().WithMaxRate(RetryBudget).WithMinConcurrency(retryMinConcurrency).
			OnBudgetExceeded(func(budget.ExceededEvent) { refused.Add(1) }).Build()).
		ReturnLastFailure().
		OnRetry(func(e failsafe.ExecutionEvent[*http.Response]) {
			retries.Add(1)
			log.Info("retrying", "dependency", e.Context().Value(serviceKey{}), "attempt", e.Attempts()+1, "err", e.LastError())
		}).
		Build()
	return &retryingTransport{base: base, balancer: balancer, retry: failsafe.With(rp)}
}

// finalError is a failed attempt that must not be repeated.
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

func (t *retryingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	service := req.URL.Host
	tried := map[string]bool{}
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Header.Get("Idempotency-Key") != ""
	resp, err := t.retry.WithContext(req.Context()).GetWithExecution(func(e failsafe.Execution[*http.Response]) (*http.Response, error) {
		if e.Attempts() > 1 {
			if err := rewind(req); err != nil {
				return nil, finalError{e.LastError()} // the body is gone with the first try
			}
		}
		for {
			addr, done, err := t.balancer.Pick(req.Context(), service, discovery.EndpointHTTP, func(a string) bool { return tried[a] })
			if err != nil {
				return nil, finalError{fault.Wrap(fault.Unavailable, err, "%s is unavailable; try again shortly", service)}
			}
			again := tried[addr]
			tried[addr] = true
			out := req.Clone(req.Context())
			out.URL.Host = addr
			resp, err := t.base.RoundTrip(out)
			resp, err = discovery.Track(resp, err, done)
			if err != nil && unreached(err) && !again && req.Context().Err() == nil {
				// A connection that could not be made reached no instance
				// (one gone, still listed for a moment): the next one is
				// tried at once, in this attempt. The retry budget bounds
				// work sent twice, and this sends none; spending it here
				// refused reads when several met a dead instance at once.
				if rewind(req) == nil {
					continue
				}
			}
			if err != nil && (req.Context().Err() != nil || !(idempotent || unreached(err))) {
				return nil, finalError{err}
			}
			return resp, err
		}
	})
	var final finalError
	if errors.As(err, &final) {
		err = final.error
	}
	if errors.Is(err, budget.ErrExceeded) {
		err = fault.Wrap(fault.Unavailable, err, "%s is failing; try again shortly", service)
	}
	return resp, err
}

// rewind makes req's body readable again for another send (the transport
// closes it after each); an error when it cannot be.
func rewind(req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	if req.GetBody == nil {
		return errors.New("the body cannot be read again")
	}
	body, err := req.GetBody()
	if err != nil {
		return err
	}
	req.Body = body
	return nil
}

// unreached reports whether err means the request never reached the
// instance (the connection could not be made).
func unreached(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	service := r.Context().Value(serviceKey{})
	var maxErr *http.MaxBytesError
	switch {
	case fault.Is(err, fault.Unavailable):
		g.log.WarnContext(r.Context(), "no upstream", "service", service, "err", err)
		rest.Error(w, r, g.log, err)
	case errors.As(err, &maxErr):
		rest.Error(w, r, g.log, fault.New(fault.TooLarge, "the body is larger than %d bytes", MaxBody))
	case errors.Is(err, context.DeadlineExceeded):
		g.log.WarnContext(r.Context(), "upstream timed out", "upstream", service, "err", err)
		rest.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream_timeout", "the service did not answer in time")
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
	case unreached(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// No instance could be reached, or the connection broke: the
		// service is unavailable for now, not answering wrongly.
		g.log.WarnContext(r.Context(), "upstream unreachable", "upstream", service, "err", err)
		rest.WriteProblem(w, r, http.StatusServiceUnavailable, "unavailable", "the service could not be reached; try again shortly")
	default:
		g.log.WarnContext(r.Context(), "upstream failed", "upstream", service, "err", err)
		w.Header().Set("Retry-After", "1") // a bad answer may be one instance's; another try may do
		rest.WriteProblem(w, r, http.StatusBadGateway, "bad_gateway", "the service answered badly")
	}
}
