package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/internal/gateway"
)

// TestADeadInstanceCostsNoRequest: one of three instances is gone (its
// port refuses connections) while the resolver still lists it, as in the
// moment after a kill -9 before the registry's watch says so. Rounds of
// 16 concurrent reads all get a 200: a refused connection reached no
// instance, so the gateway tries another, and the balancer ejects the dead
// one after its first failures.
func TestADeadInstanceCostsNoRequest(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	var instances discovery.Static
	for i := range 2 {
		srv := httptest.NewServer(ok)
		defer srv.Close()
		instances = append(instances, discovery.Instance{ID: fmt.Sprint("live-", i), Service: services.Inventory, Endpoints: map[string]string{discovery.EndpointHTTP: srv.Listener.Addr().String()}})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now: a dial is refused at once
	instances = append(instances, discovery.Instance{ID: "dead", Service: services.Inventory, Endpoints: map[string]string{discovery.EndpointHTTP: dead}})

	r := discovery.NewResolver(instances)
	defer r.Close()
	verifier := auth.NewVerifier(auth.HTTPKeySource(http.DefaultClient, "http://127.0.0.1:1/jwks"), nil)
	gw := gateway.New(r, verifier, gateway.DefaultLimits, nil, slog.New(slog.DiscardHandler))
	front := httptest.NewServer(gw.Handler())
	defer front.Close()

	const rounds, concurrent = 50, 16
	var mu sync.Mutex
	statuses := map[int]int{}
	var answers []string // the first few that were not a 200
	for range rounds {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() {
				code, body := 0, ""
				if resp, err := http.Get(front.URL + "/api/products/JX-MUG"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					code, body = resp.StatusCode, string(b)
				}
				mu.Lock()
				statuses[code]++
				if code != http.StatusOK && len(answers) < 5 {
					answers = append(answers, body)
				}
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	t.Logf("statuses: %v", statuses)
	if statuses[http.StatusOK] != rounds*concurrent {
		t.Errorf("%d of %d reads answered 200 (%v); want all; the others said %q", statuses[http.StatusOK], rounds*concurrent, statuses, answers)
	}
}
