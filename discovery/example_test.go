package discovery_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/junction-go/junction/discovery"
)

// Client-side discovery over HTTP: the client names the service, not an
// address; the transport resolves it to a live instance and balances over
// them. Static stands in for the registry (discovery.NewClient), DNS
// (dnsdisc) or etcd (etcddisc): any Source.
func Example() {
	var instances discovery.Static
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "inventory-service instance "+name)
		}))
		defer srv.Close()
		instances = append(instances, discovery.Instance{
			ID: "inventory-" + name, Service: "inventory-service",
			Endpoints: map[string]string{discovery.EndpointHTTP: strings.TrimPrefix(srv.URL, "http://")},
		})
	}
	r := discovery.NewResolver(instances)
	defer r.Close()
	client := &http.Client{Transport: &discovery.Transport{Resolver: r, Balancer: &discovery.Balancer{Resolver: r}}}

	seen := map[string]int{}
	for range 20 {
		resp, err := client.Get("http://inventory-service/api/products")
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)]++
	}
	fmt.Println(len(seen), "instances answered 20 calls")
	// Output:
	// 2 instances answered 20 calls
}
