package discovery_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/discoverytest"
	"github.com/junction-go/junction/resilience"
)

// BenchmarkHTTPClientStack is the cost of Junction's HTTP client stack per
// call — discovery.Transport resolving http://<service>/ over a Resolver,
// the P2C Balancer, the resilience policy — beside a raw net/http call to
// the same server in the same run.
func BenchmarkHTTPClientStack(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"SERVING"}`)
	}))
	defer srv.Close()
	newTransport := func() *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		return t
	}
	raw := &http.Client{Transport: newTransport()}
	r := discovery.NewResolver(discovery.Static{{ID: "a", Service: "svc", Endpoints: map[string]string{discovery.EndpointHTTP: srv.Listener.Addr().String()}}})
	defer r.Close()
	stack := &http.Client{Transport: &discovery.Transport{Resolver: r, Balancer: &discovery.Balancer{Resolver: r}, Base: newTransport()}}
	policy := resilience.New(resilience.Config{
		Name: "svc", Timeout: time.Second, MaxAttempts: 2, Backoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		RetryBudget: 0.2, BreakAfter: 5, BreakFor: 5 * time.Second, MaxConcurrent: 256,
	})
	get := func(ctx context.Context, c *http.Client, url string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	rawCall := func(ctx context.Context) error { return get(ctx, raw, srv.URL+"/") }
	stackCall := func(ctx context.Context) error {
		return policy.Do(ctx, func(ctx context.Context) error { return get(ctx, stack, "http://svc/") })
	}
	discoverytest.CompareCalls(b, rawCall, stackCall)
}
