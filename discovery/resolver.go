package discovery

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Source tells which instances of a service are live, and when that
// changes. The registry's Client is one; dnsdisc and etcddisc are the
// others.
type Source interface {
	// Watch waits until service's view differs from prev (or for a while,
	// about 30 s) and returns the current view. A zero prev returns at once.
	Watch(ctx context.Context, service string, prev View) (View, error)
}

// Registrar keeps an instance registered while ctx lasts. The registry's
// Client is one.
type Registrar interface {
	// KeepAlive registers inst with a lease of ttl, renews it until ctx is
	// done, then removes it. A failed renewal goes to onErr (when not nil)
	// and is tried again. It returns when ctx is done.
	KeepAlive(ctx context.Context, inst Instance, ttl time.Duration, onErr func(error))
}

// Static is a Source of fixed instances, for configuration that names its
// instances and for tests. A service it does not hold has none.
type Static []Instance

// Watch returns the instances of service at once the first time, and
// after that waits for ctx (they never change).
func (s Static) Watch(ctx context.Context, service string, prev View) (View, error) {
	if prev.Service != "" {
		<-ctx.Done()
		return View{}, ctx.Err()
	}
	v := View{Service: service, Epoch: "static", Revision: 1, Instances: []Instance{}}
	for _, inst := range s {
		if inst.Service == service {
			v.Instances = append(v.Instances, inst)
		}
	}
	return v, nil
}

// Resolver keeps a fresh, cached view of each service it is asked about, by
// watching a Source, and balances over the live instances round robin.
// The first question about a service starts its watch; later ones are served
// from the cache. It is safe for concurrent use; Close stops every watch and
// waits for it.
type Resolver struct {
	source Source
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	services map[string]*entry
}

type entry struct {
	ready chan struct{} // closed after the first answer, successful or not
	next  atomic.Uint64

	mu     sync.Mutex
	view   View
	err    error
	subs   map[int]func(View)
	nextID int
}

// NewResolver returns a resolver over source (the registry's Client, or
// another backend). Call Close when done.
func NewResolver(source Source) *Resolver {
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{source: source, ctx: ctx, cancel: cancel, services: map[string]*entry{}}
}

// Close stops every watch and waits for them.
func (r *Resolver) Close() {
	r.cancel()
	r.wg.Wait()
}

func (r *Resolver) entry(service string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.services[service]
	if !ok {
		e = &entry{ready: make(chan struct{}), subs: map[int]func(View){}}
		r.services[service] = e
		r.wg.Add(1)
		go r.watch(service, e)
	}
	return e
}

func (r *Resolver) watch(service string, e *entry) {
	defer r.wg.Done()
	var prev View
	backoff := 50 * time.Millisecond
	first := true
	for r.ctx.Err() == nil {
		v, err := r.source.Watch(r.ctx, service, prev)
		if r.ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		e.err = err
		var subs []func(View)
		if err == nil && (first || v.Epoch != prev.Epoch || v.Revision != prev.Revision) {
			e.view = v
			for _, s := range e.subs {
				subs = append(subs, s)
			}
		}
		e.mu.Unlock()
		if first {
			close(e.ready)
			first = false
		}
		for _, s := range subs {
			s(v)
		}
		if err != nil {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		prev = v
	}
}

// View returns the cached view of service, waiting for the first answer from
// the registry (bounded by ctx) when the service is new to r.
func (r *Resolver) View(ctx context.Context, service string) (View, error) {
	e := r.entry(service)
	select {
	case <-e.ready:
	case <-ctx.Done():
		return View{}, fmt.Errorf("resolve %s: %w", service, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.view.Service == "" && e.err != nil {
		return View{}, fmt.Errorf("resolve %s: %w", service, e.err)
	}
	return e.view, nil
}

// Pick returns the address of the named endpoint of the next live instance
// of service, round robin. It returns an error wrapping ErrNoInstances when
// no live instance offers that endpoint.
func (r *Resolver) Pick(ctx context.Context, service, endpoint string) (string, error) {
	v, err := r.View(ctx, service)
	if err != nil {
		return "", err
	}
	n := len(v.Instances)
	if n == 0 {
		return "", fmt.Errorf("resolve %s: %w", service, ErrNoInstances)
	}
	e := r.entry(service)
	start := e.next.Add(1)
	for i := range n {
		inst := v.Instances[(start+uint64(i))%uint64(n)]
		if addr := inst.Endpoints[endpoint]; addr != "" {
			return addr, nil
		}
	}
	return "", fmt.Errorf("resolve %s (%s endpoint): %w", service, endpoint, ErrNoInstances)
}

// Subscribe calls fn with service's view now (once known) and after every
// change, until the returned cancel function is called. fn must not block.
func (r *Resolver) Subscribe(service string, fn func(View)) (cancel func()) {
	e := r.entry(service)
	e.mu.Lock()
	id := e.nextID
	e.nextID++
	e.subs[id] = fn
	known := e.view.Service != ""
	v := e.view
	e.mu.Unlock()
	if known {
		fn(v)
	}
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

// Transport is an http.RoundTripper that sends a request for
// http://<service>/… to a live instance of that service: round robin, or
// by the Balancer (fewest calls in flight of two, failing instances
// ejected) when one is set.
type Transport struct {
	Resolver *Resolver
	// Balancer, when set, picks the instance and is told how each call
	// went (a 5xx or no answer is a failure of the instance).
	Balancer *Balancer
	// Base sends the rewritten request; http.DefaultTransport when nil.
	Base http.RoundTripper
}

// RoundTrip resolves req's host as a service name. It does not retry: a
// caller that knows its request is safe to repeat decides that.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var addr string
	var done func(bool)
	var err error
	if t.Balancer != nil {
		addr, done, err = t.Balancer.Pick(req.Context(), req.URL.Hostname(), EndpointHTTP, nil)
	} else {
		addr, err = t.Resolver.Pick(req.Context(), req.URL.Hostname(), EndpointHTTP)
	}
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL.Host = addr
	out.Host = addr
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if done != nil {
		return Track(resp, err, done)
	}
	return resp, err
}

// Track reports a call's outcome to done: at once when it failed or
// answered 5xx (a failure of the instance), when its body is closed
// otherwise (so a call counts as in flight until it is read).
func Track(resp *http.Response, err error, done func(ok bool)) (*http.Response, error) {
	if err != nil {
		done(false)
		return nil, err
	}
	if resp.StatusCode >= 500 {
		done(false)
		return resp, nil
	}
	resp.Body = &trackedBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

type trackedBody struct {
	io.ReadCloser
	done func(bool)
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.done(true)
	return err
}
