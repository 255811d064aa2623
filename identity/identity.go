// Package identity gives every process a workload identity and speaks mTLS
// with it: an X.509 certificate whose only name is a SPIFFE ID
// (spiffe://junction.local/<service>), issued by the shop's own CA and
// renewed before it expires without a restart.
//
// A Source holds a process's certificate and the CA bundle it trusts,
// read from three PEM files (certificate, key, CA) and read again whenever
// they change, so whatever renews them (junction up, cert-manager, SPIRE's
// helper) is picked up by the next handshake. From a Source come the
// server's and client's TLS configurations (go-spiffe's tlsconfig: the
// peer's chain is verified against the bundle and its SPIFFE ID checked,
// hostnames play no part), an HTTP transport, gRPC credentials, and the
// caller's identity on each request. Policy says which identities may call
// which route or RPC.
package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TrustDomain is the shop's SPIFFE trust domain.
var TrustDomain = spiffeid.RequireTrustDomainFromString("junction.local")

// ID is the SPIFFE ID of service in TrustDomain.
func ID(service string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(TrustDomain, service)
}

// Name is the service an ID of TrustDomain names: its last path segment,
// so spiffe://junction.local/order-service and a Kubernetes workload's
// spiffe://junction.local/ns/shop/sa/order-service both name
// order-service ("" for an ID of another trust domain).
func Name(id spiffeid.ID) string {
	if id.TrustDomain() != TrustDomain {
		return ""
	}
	p := id.Path()
	return p[strings.LastIndex(p, "/")+1:]
}

// Files are where a process finds its identity: its certificate (the leaf
// first, then any intermediates), its private key and the CA bundle it
// trusts, each PEM.
type Files struct {
	Cert, Key, CA string
}

// Set reports whether any of the three is named.
func (f Files) Set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Check says what is missing when only some are named.
func (f Files) Check() error {
	if !f.Set() {
		return nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return errors.New("mTLS needs all three of the certificate, its key and the CA bundle")
	}
	return nil
}

// Source is a process's certificate and trusted bundle, safe for use by
// every handshake at once. It implements go-spiffe's x509svid.Source and
// x509bundle.Source.
type Source struct {
	files Files

	mu     sync.RWMutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	stamp  [3]time.Time // the files' modification times when last read
}

// Load reads f. The certificate must carry exactly one SPIFFE ID of
// TrustDomain, chain to the bundle and not have expired.
func Load(f Files) (*Source, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	if !f.Set() {
		return nil, errors.New("no certificate named")
	}
	s := &Source{files: f}
	if err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// GetX509SVID returns the current certificate.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid, nil
}

// GetX509BundleForTrustDomain returns the trusted bundle of td.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bundle.GetX509BundleForTrustDomain(td)
}

// ID is the identity the current certificate proves.
func (s *Source) ID() spiffeid.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid.ID
}

// Expires is when the current certificate stops being valid.
func (s *Source) Expires() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid.Certificates[0].NotAfter
}

// Run reads the files again every interval when one of them changed,
// until ctx is done. A renewal that cannot be read keeps the current
// certificate and is tried again at the next tick: once it is a half-
// written pair (a key newer than its certificate) that heals by itself,
// at debug; when it fails again, a warning, once until it is taken.
func (s *Source) Run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		before := s.Expires()
		if err := s.reload(false); err != nil {
			failures++
			level := slog.LevelDebug
			if failures == 2 {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "renewed certificate not taken yet", "err", err)
			continue
		}
		failures = 0
		if after := s.Expires(); !after.Equal(before) {
			log.Info("certificate renewed", "id", s.ID().String(), "expires", after.UTC().Format(time.RFC3339))
		}
	}
}

// reload reads the files when forced or when one changed since last read.
func (s *Source) reload(force bool) error {
	var stamp [3]time.Time
	for i, p := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("identity: %w", err)
		}
		stamp[i] = fi.ModTime()
	}
	s.mu.RLock()
	same := stamp == s.stamp
	s.mu.RUnlock()
	if same && !force {
		return nil
	}
	svid, err := x509svid.Load(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), s.files.CA)
	if err != nil {
		return fmt.Errorf("identity: CA bundle: %w", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return fmt.Errorf("identity: %s does not chain to the CA bundle %s: %w", s.files.Cert, s.files.CA, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svid != nil && svid.ID != s.svid.ID {
		return fmt.Errorf("identity: %s now names %s, not %s", s.files.Cert, svid.ID, s.svid.ID)
	}
	s.svid, s.bundle, s.stamp = svid, bundle, stamp
	return nil
}

// serverConfig is the TLS configuration of a server that takes only
// callers with a certificate of the trust domain, speaking proto ("h2"
// for gRPC, "http/1.1" for the HTTP ports, like the plaintext servers);
// which of them may call what is Policy's business.
func (s *Source) serverConfig(proto string) *tls.Config {
	c := tlsconfig.MTLSServerConfig(s, s, tlsconfig.AuthorizeMemberOf(TrustDomain))
	c.NextProtos = []string{proto}
	return c
}

// ClientConfig is the TLS configuration of a client that presents this
// identity and accepts a server of the trust domain. The registry only
// lists an instance under the service its certificate names, so an
// address found through it belongs to that service.
func (s *Source) ClientConfig() *tls.Config {
	return tlsconfig.MTLSClientConfig(s, s, tlsconfig.AuthorizeMemberOf(TrustDomain))
}

// ClientConfigFor is ClientConfig accepting only service's identity.
func (s *Source) ClientConfigFor(service string) (*tls.Config, error) {
	id, err := ID(service)
	if err != nil {
		return nil, err
	}
	return tlsconfig.MTLSClientConfig(s, s, tlsconfig.AuthorizeID(id)), nil
}

// GRPCCredentials are the transport credentials of a gRPC client that
// calls service.
func (s *Source) GRPCCredentials(service string) (credentials.TransportCredentials, error) {
	c, err := s.ClientConfigFor(service)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(c), nil
}

// GRPCServerCredentials are the transport credentials of a gRPC server.
func (s *Source) GRPCServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.serverConfig("h2"))
}

// Transport returns an HTTP transport like http.DefaultTransport that
// speaks mTLS with this identity, keeping up to 64 idle connections per
// instance (a handshake costs far more than a plaintext connect).
// Requests may keep their http:// URLs (http://<service>/… through
// discovery, http://<address>/…): they are sent as https.
func (s *Source) Transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return s.TransportFrom(t)
}

// TransportFrom is Transport over base (its TLS configuration replaced,
// HTTP/1.1 as the servers speak).
func (s *Source) TransportFrom(base *http.Transport) http.RoundTripper {
	base.TLSClientConfig = s.ClientConfig()
	base.ForceAttemptHTTP2 = false
	return Secure(base)
}

// Secure sends every http:// request through base as https; base's TLS
// configuration says with what identity.
func Secure(base http.RoundTripper) http.RoundTripper { return secure{base} }

type secure struct{ base http.RoundTripper }

func (t secure) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	return t.base.RoundTrip(r)
}

// Listen wraps ln so every connection is mTLS with s's server
// configuration.
func (s *Source) Listen(ln net.Listener) net.Listener {
	return tls.NewListener(ln, s.serverConfig("http/1.1"))
}

// Guard is an HTTP server's mTLS and policy: ln taking only certificates
// of the trust domain, and h refusing what p does not allow.
func (s *Source) Guard(p *Policy, ln net.Listener, h http.Handler) (net.Listener, http.Handler) {
	return s.Listen(ln), p.HTTP(h)
}

// PeerID is the SPIFFE ID a verified TLS peer proved.
func PeerID(cs *tls.ConnectionState) (spiffeid.ID, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	return id, err == nil
}

// Caller is the identity that made r, when it came over mTLS.
func Caller(r *http.Request) (spiffeid.ID, bool) { return PeerID(r.TLS) }

// GRPCCaller is the identity that made a gRPC call, when over mTLS.
func GRPCCaller(ctx context.Context) (spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return spiffeid.ID{}, false
	}
	return PeerID(&info.State)
}
