package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/identity"
)

// pki is junction up's certificate authority, in <data>/pki: the CA, and
// a certificate for every instance it runs (and one for the operator,
// which up itself and the command line use), each renewed when half its
// life is gone. The instances read theirs again when the files change.
type pki struct {
	ca   *identity.CA
	data string
	ttl  time.Duration

	mu     sync.Mutex
	issued map[string]issuedCert // by file name (instance id, or operator)
}

type issuedCert struct {
	service string
	expires time.Time
}

// localSANs are the names up's certificates also carry, so curl and
// browsers can check them on this machine (curl --cacert ca.crt --cert
// operator.crt --key operator.key https://127.0.0.1:…); every peer of the
// shop checks the SPIFFE ID.
var localSANs = []string{"localhost", "127.0.0.1"}

// pkiDir is where up keeps the CA and the certificates in a data folder.
func pkiDir(data string) string { return filepath.Join(data, "pki") }

// openPKI opens (or makes) the CA of data and issues the operator's
// certificate.
func openPKI(data string, ttl time.Duration) (*pki, error) {
	ca, err := identity.OpenCA(pkiDir(data))
	if err != nil {
		return nil, err
	}
	p := &pki{ca: ca, data: data, ttl: ttl, issued: map[string]issuedCert{}}
	if _, err := p.issue(services.Operator, services.Operator); err != nil {
		return nil, err
	}
	return p, nil
}

// pkiFiles are the paths of name's certificate, key and the bundle in a
// data folder.
func pkiFiles(data, name string) identity.Files {
	dir := pkiDir(data)
	return identity.Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, "ca.crt")}
}

// issue writes a new certificate of service for name (an instance id).
func (p *pki) issue(name, service string) (identity.Files, error) {
	f := pkiFiles(p.data, name)
	svid, err := p.ca.IssueFiles(service, p.ttl, f, localSANs...)
	if err != nil {
		return identity.Files{}, fmt.Errorf("certificate of %s: %w", name, err)
	}
	p.mu.Lock()
	p.issued[name] = issuedCert{service: service, expires: svid.Certificates[0].NotAfter}
	p.mu.Unlock()
	return f, nil
}

// env are the variables that hand an instance its certificate.
func tlsEnv(f identity.Files) []string {
	return []string{"JUNCTION_TLS_CERT=" + f.Cert, "JUNCTION_TLS_KEY=" + f.Key, "JUNCTION_TLS_CA=" + f.CA}
}

// operator loads the operator's certificate (renewed with the rest).
func (p *pki) operator() (*identity.Source, error) {
	return identity.Load(pkiFiles(p.data, services.Operator))
}

// run renews every certificate whose life is half gone, checking at a
// tenth of the lifetime (at most a minute), until ctx is done.
func (p *pki) run(ctx context.Context, logf func(string, ...any)) {
	every := min(p.ttl/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		due := map[string]string{} // name -> service
		for name, c := range p.issued {
			if time.Until(c.expires) < p.ttl/2 {
				due[name] = c.service
			}
		}
		p.mu.Unlock()
		renewed := 0
		for name, service := range due {
			if _, err := p.issue(name, service); err != nil {
				logf("certificate renewal failed (tried again in %v): %v", every, err)
				continue
			}
			renewed++
		}
		if renewed > 0 {
			logf("renewed %d certificates, each valid for %v", renewed, p.ttl)
		}
	}
}

// operatorTransport is how the command line reaches a running system's
// internal ports: with the operator certificate junction up keeps in the
// data folder, or plaintext when there is none (a system run without
// mTLS).
func operatorTransport(data string) (http.RoundTripper, error) {
	src, err := runIdentity(data, services.Operator)
	if err != nil || src == nil {
		return http.DefaultTransport, err
	}
	return src.Transport(), nil
}

// runIdentity is the certificate junction up gave name (an instance id,
// or the operator) in a data folder, nil for a run without mTLS (no
// operator certificate, which such a run removes).
func runIdentity(data, name string) (*identity.Source, error) {
	if _, err := os.Stat(pkiFiles(data, services.Operator).Cert); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	src, err := identity.Load(pkiFiles(data, name))
	if err != nil {
		return nil, fmt.Errorf("certificate of %s in %s: %w", name, pkiDir(data), err)
	}
	return src, nil
}

// removeOperatorCert takes the operator's certificate out of a data folder
// run without mTLS, so the command line speaks plaintext to it.
func removeOperatorCert(data string) error {
	for _, ext := range []string{".crt", ".key"} {
		if err := os.Remove(filepath.Join(pkiDir(data), services.Operator+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// grpcCredentialsOf dial service as the instance name of a data folder's
// run (bench grpc calls user-service as order-service-1), or plaintext
// when the run has no certificates.
func grpcCredentialsOf(data, name, service string) (grpc.DialOption, error) {
	src, err := runIdentity(data, name)
	if err != nil {
		return nil, err
	}
	if src == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	creds, err := src.GRPCCredentials(service)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(creds), nil
}
