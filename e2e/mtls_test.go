package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/identity"
)

// TestServiceIdentity: every internal port of a run speaks mTLS only;
// the call table (services.Calls) is enforced at each server, row by row,
// for a caller it names and one it does not; the broker maps each
// certificate to a user that publishes to its own topics only; the
// registry lists an instance only under its certificate's service; and
// certificates renewed by junction up are served without a restart.
func TestServiceIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system; skipped with -short")
	}
	// Certificates of 20 s, renewed every 10 s: the renewal is seen here.
	sys := startSystem(t, t.TempDir(), "--cert-ttl", "20s")
	ctx := t.Context()
	cat, err := sys.registry(t).Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ports []port
	first := map[string]discovery.Instance{}
	for _, v := range cat.Services {
		for _, in := range v.Instances {
			if _, ok := first[in.Service]; !ok {
				first[in.Service] = in
			}
			if in.Service == services.Gateway {
				continue // the public port
			}
			for kind, addr := range in.Endpoints {
				ports = append(ports, port{in.ID, in.Service, kind, addr})
			}
		}
	}
	// Every service is listed and passes the registry's probes, the
	// gateway's plain port as much as the others' mTLS ones.
	for _, svc := range services.All() {
		if _, ok := first[svc]; !ok {
			t.Errorf("%s is not in the catalog (its probes failing?)", svc)
		}
	}
	registry := discovery.Instance{ID: "registry-1", Service: services.Registry, Endpoints: map[string]string{discovery.EndpointHTTP: strings.TrimPrefix(sys.Registry, "https://")}}
	first[services.Registry] = registry
	ports = append(ports, port{registry.ID, registry.Service, discovery.EndpointHTTP, registry.Endpoints[discovery.EndpointHTTP]})

	// A certificate of the right name from another CA.
	other, err := identity.OpenCA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rogueFiles := identity.Files{Cert: filepath.Join(dir, "g.crt"), Key: filepath.Join(dir, "g.key"), CA: other.BundleFile()}
	if _, err := other.IssueFiles(services.Gateway, time.Hour, rogueFiles); err != nil {
		t.Fatal(err)
	}
	rogue, err := identity.Load(rogueFiles)
	if err != nil {
		t.Fatal(err)
	}
	refusedPorts := 0
	t.Run("every internal port refuses plaintext, no certificate and another CA's", func(t *testing.T) {
		for _, p := range ports {
			for _, try := range []struct {
				name string
				call func(p port) error
			}{
				{"plaintext", func(p port) error { return reach(p.kind, p.addr, nil) }},
				{"no certificate", func(p port) error { return tlsWithout(p.addr) }},
				{"another CA's certificate", func(p port) error { return reach(p.kind, p.addr, rogue) }},
			} {
				if err := try.call(p); err == nil {
					t.Errorf("%s %s port %s took a call with %s", p.instance, p.kind, p.addr, try.name)
				} else {
					refusedPorts++
				}
			}
		}
		t.Logf("%d ports, %d connections tried, %d refused", len(ports), 3*len(ports), refusedPorts)
	})

	t.Run("the call table holds at every server", func(t *testing.T) {
		allowedOK, deniedOK := 0, 0
		for _, service := range append(services.All(), services.Registry) {
			in, ok := first[service]
			if !ok || service == services.Gateway {
				continue
			}
			for _, call := range services.Calls(service) {
				allowed, denied := callersOf(call.Callers)
				if rpc, ok := rpcOf(call.Pattern); ok {
					addr := in.Endpoints[discovery.EndpointGRPC]
					if addr == "" {
						continue // a service without gRPC
					}
					if code := invoke(t, sys, allowed, service, addr, rpc); code == codes.PermissionDenied {
						t.Errorf("%s calling %s on %s: PermissionDenied, but the table lets it", allowed, rpc, service)
					} else {
						allowedOK++
					}
					if denied != "" {
						if code := invoke(t, sys, denied, service, addr, rpc); code != codes.PermissionDenied {
							t.Errorf("%s calling %s on %s: %v, want PermissionDenied", denied, rpc, service, code)
						} else {
							deniedOK++
						}
					}
					continue
				}
				method, path := requestOf(call.Pattern)
				base := "http://" + in.Endpoints[discovery.EndpointHTTP]
				if got := statusAs(t, sys, allowed, method, base+path); got == http.StatusForbidden {
					t.Errorf("%s %s%s as %s = 403, but the table lets it", method, service, path, allowed)
				} else {
					allowedOK++
				}
				if denied != "" {
					if got := statusAs(t, sys, denied, method, base+path); got != http.StatusForbidden {
						t.Errorf("%s %s%s as %s = %d, want 403", method, service, path, denied, got)
					} else {
						deniedOK++
					}
				}
			}
		}
		// A route no row names is refused to everyone.
		if got := statusAs(t, sys, "gateway-1", "GET", "http://"+first[services.Payment].Endpoints[discovery.EndpointHTTP]+"/api/payments"); got != http.StatusForbidden {
			t.Errorf("GET payment-service /api/payments (no row) as the gateway = %d, want 403", got)
		}
		if allowedOK < 30 || deniedOK < 30 {
			t.Errorf("only %d allowed and %d refused calls checked: the table was not read", allowedOK, deniedOK)
		}
		t.Logf("%d calls the table allows passed, %d it does not were refused", allowedOK, deniedOK)
	})

	t.Run("the broker lets each service publish to its own topics only", func(t *testing.T) {
		if _, err := nats.Connect(sys.Broker, nats.Timeout(2*time.Second)); err == nil {
			t.Error("the broker took a client without a certificate")
		}
		for _, tc := range []struct{ who, subject string }{
			{"inventory-service-1", "orders"},                     // order-service's topic
			{"notification-service-1", "shipments"},               // shipping-service's
			{"gateway-1", "payment-commands"},                     // the gateway publishes nothing
			{"payment-service-1", "$JS.API.STREAM.DELETE.orders"}, // nobody deletes a stream
		} {
			if err := publishAs(t, sys, tc.who, tc.subject); err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("%s publishing to %s: %v, want a permissions violation", tc.who, tc.subject, err)
			}
		}
		if err := subscribeAs(t, sys, "gateway-1", "orders"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("the gateway following orders: %v, want a permissions violation (it follows order-history only)", err)
		}
		if err := subscribeAs(t, sys, "gateway-1", "order-history"); err != nil {
			t.Errorf("the gateway following order-history: %v", err)
		}
	})

	t.Run("the registry lists an instance only under its certificate's service", func(t *testing.T) {
		asGateway := discovery.NewClient(sys.Registry, &http.Client{Transport: sys.transportOf(t, "gateway-1")})
		fake := discovery.Instance{ID: "user-service-9", Service: services.User, Endpoints: map[string]string{"http": "127.0.0.1:9"}}
		if err := asGateway.Register(ctx, fake, 10*time.Second); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("the gateway registering a user-service instance: %v, want 403", err)
		}
		if err := asGateway.Deregister(ctx, first[services.User].ID); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("the gateway removing user-service-1: %v, want 403", err)
		}
		v, err := sys.registry(t).Lookup(ctx, services.User)
		if err != nil || len(v.Instances) != 1 || v.Instances[0].ID != first[services.User].ID {
			t.Errorf("user-service instances after the attempts = %+v, %v; want user-service-1 alone", v.Instances, err)
		}
	})

	t.Run("a renewed certificate is served without a restart", func(t *testing.T) {
		users := first[services.User]
		first := served(t, sys, users.Endpoints[discovery.EndpointHTTP])
		eventually(t, 30*time.Second, "user-service to serve its renewed certificate", func() error {
			if c := served(t, sys, users.Endpoints[discovery.EndpointHTTP]); c.SerialNumber.Cmp(first.SerialNumber) == 0 {
				return errors.New("still serial " + c.SerialNumber.String())
			}
			return nil
		})
		v, err := sys.registry(t).Lookup(ctx, services.User)
		if err != nil || len(v.Instances) != 1 || v.Instances[0].Metadata["pid"] != users.Metadata["pid"] {
			t.Errorf("user-service after the renewal = %+v, %v; want the same process (pid %s)", v.Instances, err, users.Metadata["pid"])
		}
		// Past the first certificates' expiry, the shop still works.
		eventually(t, 30*time.Second, "the first certificates to expire", func() error {
			if left := time.Until(first.NotAfter); left > 0 {
				return fmt.Errorf("%v left", left)
			}
			return nil
		})
		alice := newClient(t, sys.Gateway)
		alice.login("alice", "junction")
		a := alice.do("POST", "/api/orders", map[string]any{"items": []map[string]any{{"sku": "JX-MUG", "quantity": 1}}})
		var o orderJSON
		a.decode(t, &o)
		if a.Status != http.StatusCreated {
			t.Fatalf("an order after the renewals = %d %s, want 201", a.Status, a.Body)
		}
		// Its saga crosses every hop: gRPC, the broker, the provider.
		eventually(t, 30*time.Second, "the order to be confirmed", func() error {
			r := alice.do("GET", fmt.Sprintf("/api/orders/%d?wait=5s", o.OrderID), nil)
			r.decode(t, &o)
			if o.Status != "confirmed" && o.Status != "shipped" {
				return fmt.Errorf("%d %s", r.Status, o.Status)
			}
			return nil
		})
	})
}

// callersOf picks a caller the list allows (as the certificate name of
// an instance junction up runs) and one it does not ("" when any may).
func callersOf(callers []string) (allowed, denied string) {
	name := func(service string) string {
		if service == services.Operator {
			return service
		}
		return service + "-1"
	}
	if slices.Contains(callers, services.AnyCaller) {
		return name(services.Inventory), ""
	}
	allowed = name(callers[0])
	for _, s := range append(services.All(), services.Operator) {
		if !slices.Contains(callers, s) && s != services.PaymentProvider && s != services.Broker {
			return allowed, name(s)
		}
	}
	return allowed, ""
}

// rpcOf is the gRPC method a pattern names; a service's prefix gets one
// of its methods (an unknown method is Unimplemented before any check).
func rpcOf(pattern string) (string, bool) {
	if !regexp.MustCompile(`^/[a-z0-9]+(\.[A-Za-z0-9]+)+/`).MatchString(pattern) {
		return "", false
	}
	if strings.HasSuffix(pattern, "/") {
		method := map[string]string{
			"/grpc.health.v1.Health/":                    "Check",
			"/inventory.v1.InventoryService/":            "CheckAvailability",
			"/user.v1.UserService/":                      "GetUser",
			"/grpc.reflection.v1.ServerReflection/":      "ServerReflectionInfo",
			"/grpc.reflection.v1alpha.ServerReflection/": "ServerReflectionInfo",
		}[pattern]
		return pattern + method, method != ""
	}
	return pattern, true
}

// requestOf is a request a ServeMux pattern matches.
func requestOf(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	path = regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "e2e-1")
	if strings.HasSuffix(path, "/") {
		path += "e2e"
	}
	return method, path
}

func statusAs(t *testing.T, sys *system, who, method, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	resp, err := (&http.Client{Transport: sys.transportOf(t, who), Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, url, who, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func invoke(t *testing.T, sys *system, who, service, addr, method string) codes.Code {
	t.Helper()
	conn := sys.grpcAs(t, who, service, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	return status.Code(err)
}

// port is one internal listener of an instance.
type port struct{ instance, service, kind, addr string }

var netDialer = net.Dialer{Timeout: 3 * time.Second}

// tlsWithout does a TLS handshake with no client certificate and sends a
// request; nil when it was answered.
func tlsWithout(addr string) error {
	c, err := tls.DialWithDialer(&netDialer, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	// TLS 1.3 reports the server's refusal on the first read.
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

// reach calls the port at addr as as (plaintext when nil) and returns
// nil when it was answered: the HTTP port's readiness, gRPC health, a
// NATS connection.
func reach(kind, addr string, as *identity.Source) error {
	switch kind {
	case discovery.EndpointGRPC:
		creds := insecure.NewCredentials()
		if as != nil {
			creds, _ = as.GRPCCredentials(services.Gateway) // the server's name is not the point
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	case discovery.EndpointNATS:
		opts := []nats.Option{nats.Timeout(2 * time.Second)}
		if as != nil {
			opts = append(opts, nats.Secure(as.ClientConfig()))
		}
		nc, err := nats.Connect("nats://"+addr, opts...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	var rt http.RoundTripper = http.DefaultTransport
	if as != nil {
		rt = as.Transport()
	}
	resp, err := (&http.Client{Transport: rt, Timeout: 3 * time.Second}).Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		return errors.New(resp.Status) // "Client sent an HTTP request to an HTTPS server"
	}
	return nil
}

// publishAs publishes to subject as who and returns the server's
// complaint, if any.
func publishAs(t *testing.T, sys *system, who, subject string) error {
	return natsAttempt(t, sys, who, func(nc *nats.Conn) error { return nc.Publish(subject, []byte("e2e")) })
}

func subscribeAs(t *testing.T, sys *system, who, subject string) error {
	return natsAttempt(t, sys, who, func(nc *nats.Conn) error {
		_, err := nc.SubscribeSync(subject)
		return err
	})
}

func natsAttempt(t *testing.T, sys *system, who string, do func(*nats.Conn) error) error {
	t.Helper()
	nc, err := nats.Connect(sys.Broker, nats.Secure(sys.identityOf(t, who).ClientConfig()))
	if err != nil {
		t.Fatalf("connect as %s: %v", who, err)
	}
	defer nc.Close()
	if err := do(nc); err != nil {
		return err
	}
	// The server answers a refused publish or subscription with an error
	// before the flush's pong, and the client records it (LastError) as
	// it reads it: once the flush returns, it is there or there is none.
	if err := nc.Flush(); err != nil {
		return err
	}
	return nc.LastError()
}

// served is the certificate the server at addr presents.
func served(t *testing.T, sys *system, addr string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&netDialer, "tcp", addr, sys.identityOf(t, "operator").ClientConfig())
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}
