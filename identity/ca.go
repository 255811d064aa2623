package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA issues the trust domain's certificates: a self-signed ECDSA P-256
// root whose key never leaves the folder it was made in.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
}

// The CA's files in its folder.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// caLifetime is how long a new root is valid.
const caLifetime = 10 * 365 * 24 * time.Hour

// OpenCA loads the CA in dir, or makes one there (the key readable by its
// owner only) when the folder has none.
func OpenCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return newCA(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", certPath, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", keyPath, err)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("CA %s expired on %s: move the folder away to make a new one", certPath, cert.NotAfter.Format(time.DateOnly))
	}
	return &CA{dir: dir, cert: cert, key: key}, nil
}

func newCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Junction"}, CommonName: "Junction CA " + TrustDomain.Name()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{TrustDomain.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	// The key first: a folder with a certificate and no key is not opened.
	if err := writeFile(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, caCertFile), pemCert(der), 0o644); err != nil {
		return nil, err
	}
	return &CA{dir: dir, cert: cert, key: key}, nil
}

// BundleFile is the path of the CA's certificate: the bundle every
// process trusts.
func (ca *CA) BundleFile() string { return filepath.Join(ca.dir, caCertFile) }

// Issue makes a certificate for service valid for ttl (from a minute ago,
// for clocks a little behind), with a new key. Hosts (names or IP
// addresses) are added as DNS and IP names, for tools that check a
// hostname (curl); Junction's peers check only the SPIFFE ID.
func (ca *CA) Issue(service string, ttl time.Duration, hosts ...string) (*x509svid.SVID, error) {
	id, err := ID(service)
	if err != nil {
		return nil, fmt.Errorf("identity of %q: %w", service, err)
	}
	return ca.issue(id, ttl, hosts)
}

func (ca *CA) issue(id spiffeid.ID, ttl time.Duration, hosts []string) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Junction"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// IssueFiles issues service a certificate valid for ttl and writes it to
// f.Cert and f.Key (the key 0600) and the bundle to f.CA, each by rename,
// the key before the certificate. A reader that finds the new key with the
// old certificate sees a mismatch and keeps what it has until both are
// there (Source.Run).
func (ca *CA) IssueFiles(service string, ttl time.Duration, f Files, hosts ...string) (*x509svid.SVID, error) {
	svid, err := ca.Issue(service, ttl, hosts...)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return nil, err
	}
	if f.CA != ca.BundleFile() {
		if err := writeFile(f.CA, pemCert(ca.cert.Raw), 0o644); err != nil {
			return nil, err
		}
	}
	if err := writeFile(f.Key, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(f.Cert, certPEM, 0o644); err != nil {
		return nil, err
	}
	return svid, nil
}

// serial is a random 127-bit serial number (crypto/rand.Read never fails).
func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func marshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T key cannot sign", k)
	}
	return s, nil
}

// writeFile writes b to path by way of a temporary file in the same
// folder, so a reader finds the old contents or the new, never a part.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
