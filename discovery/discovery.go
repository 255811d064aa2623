// Package discovery finds service instances: it registers an instance with a
// lease kept alive by heartbeats, looks instances up, watches a service for
// changes (long polling) and balances calls over the live instances, for
// HTTP (a RoundTripper that resolves http://<service>/…) and, in
// discovery/grpcresolve, for gRPC.
//
// It speaks the HTTP API of Junction's registry; the wire types below are
// that API's contract.
package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Endpoint names of an instance.
const (
	EndpointHTTP = "http"
	EndpointGRPC = "grpc"
	EndpointNATS = "nats"
)

// MetadataMTLS is the metadata key of an instance whose ports take only
// mTLS ("true"); an instance without it speaks plaintext (the gateway's
// public port). Probes and scrapes choose their transport by it.
const MetadataMTLS = "mtls"

// MTLS reports whether in's ports take only mTLS.
func (in Instance) MTLS() bool { return in.Metadata[MetadataMTLS] == "true" }

// Clients reach instances' own ports (probes, scrapes): Secure, with mTLS,
// one whose ports take only that (Instance.MTLS), Plain the others (a
// gateway's public port).
type Clients struct{ Secure, Plain *http.Client }

// For is the client of in's ports.
func (c Clients) For(in Instance) *http.Client {
	if in.MTLS() {
		return c.Secure
	}
	return c.Plain
}

// Instance is one running copy of a service.
type Instance struct {
	// ID is unique across the registry and stable across restarts of the
	// same instance, so a restarted process replaces its old entry.
	ID      string `json:"id"`
	Service string `json:"service"`
	// Endpoints maps a protocol ("http", "grpc", …) to host:port.
	Endpoints map[string]string `json:"endpoints"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Registration is the body of a register or renew call.
type Registration struct {
	Instance
	TTLSeconds int `json:"ttlSeconds"`
}

// View is the set of live instances of one service at a revision. Epoch
// changes when the registry restarts; revisions count from zero again then.
type View struct {
	Service   string     `json:"service"`
	Epoch     string     `json:"epoch"`
	Revision  uint64     `json:"revision"`
	Instances []Instance `json:"instances"`
}

// Catalog is every service's view.
type Catalog struct {
	Epoch    string `json:"epoch"`
	Revision uint64 `json:"revision"`
	Services []View `json:"services"`
}

// ErrNoInstances is returned when a service has no live instance.
var ErrNoInstances = errors.New("no live instance")

// Client calls a registry. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the registry at base (http://host:port).
func NewClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport}
	}
	return &Client{base: base, http: hc}
}

// Register registers or renews inst with a lease of ttl.
func (c *Client) Register(ctx context.Context, inst Instance, ttl time.Duration) error {
	body, err := json.Marshal(Registration{Instance: inst, TTLSeconds: int(ttl / time.Second)})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(inst.ID), body, nil)
}

// Deregister removes the instance id. Removing an unknown id is not an error.
func (c *Client) Deregister(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, nil)
}

// Lookup returns the live instances of service.
func (c *Client) Lookup(ctx context.Context, service string) (View, error) {
	var v View
	err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service), nil, &v)
	return v, err
}

// Catalog returns every service with its live instances.
func (c *Client) Catalog(ctx context.Context) (Catalog, error) {
	var cat Catalog
	err := c.do(ctx, http.MethodGet, "/v1/services", nil, &cat)
	return cat, err
}

// Watch waits until service's view differs from prev (or up to about 30 s)
// and returns the current view. A zero prev returns at once.
func (c *Client) Watch(ctx context.Context, service string, prev View) (View, error) {
	q := url.Values{"wait": {strconv.FormatUint(prev.Revision, 10)}, "epoch": {prev.Epoch}}
	var v View
	err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"?"+q.Encode(), nil, &v)
	return v, err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("registry %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("registry %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("registry %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("registry %s %s: decode: %w", method, path, err)
	}
	return nil
}

// KeepAlive registers inst and renews its lease every ttl/3 until ctx is
// done, then deregisters it (within 2 s). A failed renewal is reported to
// onErr (when not nil) and tried again soon; a registry that restarted
// learns the instance again from the next renewal. It returns when ctx is
// done.
func (c *Client) KeepAlive(ctx context.Context, inst Instance, ttl time.Duration, onErr func(error)) {
	// After a failed renewal the next try comes sooner (from 100 ms,
	// doubling), so an instance that started before the registry is
	// found quickly.
	retry := 100 * time.Millisecond
	renew := func() time.Duration {
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		defer cancel()
		err := c.Register(rctx, inst, ttl)
		if err == nil {
			retry = 100 * time.Millisecond
			return ttl / 3
		}
		if onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		wait := retry
		retry = min(retry*2, ttl/3)
		return wait
	}
	t := time.NewTimer(renew())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = c.Deregister(dctx, inst.ID)
			return
		case <-t.C:
			t.Reset(renew())
		}
	}
}
