package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// BenchmarkOrderRead measures GET /api/orders/{id} at low load (one caller,
// one request at a time) through the gateway and, in the same run, sent
// straight to order-service. The gap is what the gateway costs: routing,
// token check, proxying.
//
//	go test ./e2e -run '^$' -bench OrderRead -benchtime 5000x
func BenchmarkOrderRead(b *testing.B) {
	sys := startSystem(b, b.TempDir())
	alice := newClient(b, sys.Gateway)
	alice.login("alice", "junction")
	r := alice.do("POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}})
	var o orderJSON
	r.decode(b, &o)
	if r.Status != http.StatusCreated {
		b.Fatalf("create order = %d %s", r.Status, r.Body)
	}
	view, err := sys.registry(b).Lookup(context.Background(), "order-service")
	if err != nil || len(view.Instances) == 0 {
		b.Fatalf("lookup order-service: %v", err)
	}
	path := fmt.Sprintf("/api/orders/%d", o.OrderID)
	// Direct is as the gateway calls order-service: with its
	// certificate when the run has mTLS.
	var direct http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: 4}
	if gw := sys.identityOf(b, "gateway-1"); gw != nil {
		direct = gw.TransportFrom(&http.Transport{MaxIdleConnsPerHost: 4})
	}
	for _, target := range []struct {
		name, base string
		rt         http.RoundTripper
	}{
		{"direct", "http://" + view.Instances[0].Endpoints["http"], direct},
		{"gateway", sys.Gateway, &http.Transport{MaxIdleConnsPerHost: 4}},
	} {
		b.Run(target.name, func(b *testing.B) {
			client := &http.Client{Transport: target.rt}
			req, _ := http.NewRequest("GET", target.base+path, nil)
			req.Header.Set("Authorization", "Bearer "+alice.token)
			get := func() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s = %d", target.base+path, resp.StatusCode)
				}
			}
			for range 200 { // warm connections and caches
				get()
			}
			h := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				get()
				_ = h.RecordValue(time.Since(start).Microseconds())
			}
			b.ReportMetric(float64(h.ValueAtQuantile(50))/1000, "p50-ms")
			b.ReportMetric(float64(h.ValueAtQuantile(99))/1000, "p99-ms")
		})
	}
}
