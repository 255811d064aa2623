package identity_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/junction-go/junction/identity"
)

// issued writes service's certificate under dir and loads it.
func issued(t *testing.T, ca *identity.CA, dir, service string) (*identity.Source, identity.Files) {
	t.Helper()
	f := identity.Files{Cert: filepath.Join(dir, service+".crt"), Key: filepath.Join(dir, service+".key"), CA: ca.BundleFile()}
	if _, err := ca.IssueFiles(service, time.Hour, f); err != nil {
		t.Fatal(err)
	}
	src, err := identity.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return src, f
}

// serve runs an HTTP server with src's identity, letting order-service
// (only) call GET /users/.
func serve(t *testing.T, src *identity.Source) string {
	t.Helper()
	policy, err := identity.NewPolicy([]identity.Rule{{Pattern: "GET /users/", Callers: []string{"order-service"}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: policy.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identity.Caller(r)
		io.WriteString(w, id.String())
	})), ErrorLog: nil}
	go srv.Serve(src.Listen(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(t *testing.T, client *identity.Source, addr, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: client.Transport(), Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMTLSAndPolicy(t *testing.T) {
	dir := t.TempDir()
	ca, err := identity.OpenCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca", "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	users, _ := issued(t, ca, dir, "user-service")
	orders, _ := issued(t, ca, dir, "order-service")
	stock, _ := issued(t, ca, dir, "inventory-service")
	addr := serve(t, users)

	if code, body := get(t, orders, addr, "/users/1"); code != 200 || body != "spiffe://junction.local/order-service" {
		t.Errorf("order-service GET /users/1 = %d %q, want 200 and its own id", code, body)
	}
	if code, _ := get(t, stock, addr, "/users/1"); code != http.StatusForbidden {
		t.Errorf("inventory-service GET /users/1 = %d, want 403", code)
	}
	if code, _ := get(t, orders, addr, "/other"); code != http.StatusForbidden {
		t.Errorf("order-service GET /other (no rule) = %d, want 403", code)
	}

	t.Run("plaintext is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/users/1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("plaintext GET = %d, want the TLS server's 400 or an error", resp.StatusCode)
			}
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			// TLS 1.3 reports the server's refusal on the first read.
			_, err = io.WriteString(c, "GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
			if err == nil {
				_, err = bufio.NewReader(c).ReadString('\n')
			}
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("handshake without a certificate: err = %v, want a certificate error", err)
		}
	})
	t.Run("another CA's certificate is refused", func(t *testing.T) {
		other, err := identity.OpenCA(filepath.Join(dir, "other"))
		if err != nil {
			t.Fatal(err)
		}
		rogue, _ := issued(t, other, filepath.Join(dir, "rogue"), "order-service")
		hc := &http.Client{Transport: rogue.Transport(), Timeout: 5 * time.Second}
		resp, err := hc.Get("http://" + addr + "/users/1")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a certificate of another CA was let in: %d", resp.StatusCode)
		}
	})
}

func TestRenewalWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca, err := identity.OpenCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	users, files := issued(t, ca, dir, "user-service")
	orders, _ := issued(t, ca, dir, "order-service")
	addr := serve(t, users)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- users.Run(ctx, 10*time.Millisecond, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()

	serialOf := func() string {
		cfg := orders.ClientConfig()
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serialOf()
	renewed, err := ca.IssueFiles("user-service", 2*time.Hour, files)
	if err != nil {
		t.Fatal(err)
	}
	want := renewed.Certificates[0].SerialNumber.String()
	deadline := time.Now().Add(10 * time.Second)
	for serialOf() != want {
		if time.Now().After(deadline) {
			t.Fatalf("server still presents serial %s (before: %s), want the renewed %s", serialOf(), before, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := get(t, orders, addr, "/users/1"); code != 200 {
		t.Errorf("after renewal: GET = %d, want 200", code)
	}

	// A certificate of another identity in its files is not taken.
	if _, err := ca.IssueFiles("inventory-service", time.Hour, files); err != nil {
		t.Fatal(err)
	}
	if err := users.Run(ctxTimeout(t, 50*time.Millisecond), 10*time.Millisecond, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if got := users.ID().String(); got != "spiffe://junction.local/user-service" {
		t.Errorf("after a foreign certificate was written: ID = %s, want user-service's", got)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPolicyMatching(t *testing.T) {
	p, err := identity.NewPolicy([]identity.Rule{
		{Pattern: "/api/", Callers: []string{"gateway"}},
		{Pattern: "GET /.well-known/jwks.json", Callers: []string{"gateway", "order-service"}},
		{Pattern: "/user.v1.UserService/GetUser", Callers: []string{"order-service"}},
		{Pattern: "/grpc.health.v1.Health/", Callers: []string{"registry"}},
		{Pattern: "GET /v1/services", Callers: []string{identity.Any}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, caller string
		want                 bool
	}{
		{"POST", "/api/orders", "gateway", true},
		{"POST", "/api/orders", "order-service", false},
		{"GET", "/.well-known/jwks.json", "order-service", true},
		{"POST", "/.well-known/jwks.json", "order-service", false},
		{"GET", "/.well-known/jwks.json", "inventory-service", false},
		{"GET", "/v1/services", "anyone", true},
		{"GET", "/nothing", "gateway", false},
	} {
		r, _ := http.NewRequest(tc.method, "http://x"+tc.path, nil)
		if got := p.AllowsHTTP(r, tc.caller); got != tc.want {
			t.Errorf("AllowsHTTP(%s %s, %s) = %v, want %v", tc.method, tc.path, tc.caller, got, tc.want)
		}
	}
	for _, tc := range []struct {
		method, caller string
		want           bool
	}{
		{"/user.v1.UserService/GetUser", "order-service", true},
		{"/user.v1.UserService/GetUser", "gateway", false},
		{"/user.v1.UserService/Other", "order-service", false},
		{"/grpc.health.v1.Health/Check", "registry", true},
		{"/grpc.health.v1.Health/Watch", "gateway", false},
	} {
		if got := p.AllowsRPC(tc.method, tc.caller); got != tc.want {
			t.Errorf("AllowsRPC(%s, %s) = %v, want %v", tc.method, tc.caller, got, tc.want)
		}
	}
	if _, err := identity.NewPolicy([]identity.Rule{{Pattern: "GET /x", Callers: nil}}); err == nil {
		t.Error("a rule with no callers was taken")
	}
	if _, err := identity.NewPolicy([]identity.Rule{{Pattern: "GET /x", Callers: []string{"a"}}, {Pattern: "GET /x", Callers: []string{"b"}}}); err == nil {
		t.Error("a duplicate pattern was taken")
	}
}

func TestName(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"spiffe://junction.local/order-service", "order-service"},
		{"spiffe://junction.local/ns/shop/sa/order-service", "order-service"},
		{"spiffe://example.org/order-service", ""},
	} {
		id, err := spiffeid.FromString(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := identity.Name(id); got != tc.want {
			t.Errorf("Name(%s) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
