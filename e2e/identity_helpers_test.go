package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/identity"
)

// pki is the folder where junction up keeps its CA and certificates.
func (s *system) pki() string { return filepath.Join(s.Data, "pki") }

// identityOf loads the certificate junction up gave name (an instance id
// such as "gateway-1", or "operator"); nil for a run without mTLS.
func (s *system) identityOf(t testing.TB, name string) *identity.Source {
	t.Helper()
	if _, err := os.Stat(filepath.Join(s.pki(), "operator.crt")); err != nil {
		return nil
	}
	src, err := identity.Load(identity.Files{
		Cert: filepath.Join(s.pki(), name+".crt"), Key: filepath.Join(s.pki(), name+".key"), CA: filepath.Join(s.pki(), "ca.crt"),
	})
	if err != nil {
		t.Fatalf("certificate of %s: %v", name, err)
	}
	return src
}

// transportOf reaches internal ports as name (plaintext without mTLS).
func (s *system) transportOf(t testing.TB, name string) http.RoundTripper {
	t.Helper()
	if src := s.identityOf(t, name); src != nil {
		return src.Transport()
	}
	return http.DefaultTransport
}

// internal is an HTTP client of the internal ports, as the operator.
func (s *system) internal(t testing.TB) *http.Client {
	t.Helper()
	return &http.Client{Transport: s.transportOf(t, "operator"), Timeout: 10 * time.Second}
}

// registry is the registry's client, as the operator.
func (s *system) registry(t testing.TB) *discovery.Client {
	t.Helper()
	return discovery.NewClient(s.Registry, s.internal(t))
}

// grpcAs dials addr as name, expecting service at the other end.
func (s *system) grpcAs(t testing.TB, name, service, addr string) *grpc.ClientConn {
	t.Helper()
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	if src := s.identityOf(t, name); src != nil {
		c, err := src.GRPCCredentials(service)
		if err != nil {
			t.Fatal(err)
		}
		creds = grpc.WithTransportCredentials(c)
	}
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// issue makes a certificate of service named name with the run's CA, for
// a process the test starts itself; it returns the variables that hand
// it over.
func (s *system) issue(t testing.TB, name, service string) []string {
	t.Helper()
	ca, err := identity.OpenCA(s.pki())
	if err != nil {
		t.Fatal(err)
	}
	f := identity.Files{Cert: filepath.Join(s.pki(), name+".crt"), Key: filepath.Join(s.pki(), name+".key"), CA: ca.BundleFile()}
	if _, err := ca.IssueFiles(service, time.Hour, f); err != nil {
		t.Fatal(err)
	}
	return []string{"JUNCTION_TLS_CERT=" + f.Cert, "JUNCTION_TLS_KEY=" + f.Key, "JUNCTION_TLS_CA=" + f.CA, "JUNCTION_BROKER_TLS=true"}
}

// natsAs connects to the run's broker as name (with its certificate when
// the run has mTLS).
func (s *system) natsAs(t testing.TB, name string) (*nats.Conn, error) {
	t.Helper()
	if src := s.identityOf(t, name); src != nil {
		return nats.Connect(s.Broker, nats.Secure(src.ClientConfig()))
	}
	return nats.Connect(s.Broker)
}
