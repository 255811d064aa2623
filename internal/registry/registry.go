// Package registry is Junction's service registry: instances register with a
// lease, renew it by heartbeat and drop out when it lapses or they
// deregister; lookups see only live instances, and watchers are woken on
// every change.
//
// State is kept in memory: a registry that restarts learns every instance
// again from its next heartbeat, and its new epoch tells watchers to refresh.
package registry

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
)

// Lease bounds.
const (
	MinTTL     = 1 * time.Second
	MaxTTL     = 5 * time.Minute
	DefaultTTL = 10 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// Registry holds the live instances. It is safe for concurrent use.
type Registry struct {
	now   func() time.Time
	epoch string

	mu        sync.Mutex
	rev       uint64
	instances map[string]*lease // by instance id
	services  map[string]uint64 // service → revision of its last change
	changed   chan struct{}     // closed and replaced on every change
}

type lease struct {
	inst    discovery.Instance
	expires time.Time
	// failures counts consecutive failed probes; an instance at the limit
	// is unhealthy and left out of lookups until a probe passes.
	failures  int
	unhealthy bool
}

// New returns an empty registry; now is its clock (time.Now when nil).
func New(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{
		now:       now,
		epoch:     strconv.FormatInt(now().UnixNano(), 36),
		instances: map[string]*lease{},
		services:  map[string]uint64{},
		changed:   make(chan struct{}),
	}
}

// Register adds inst or renews its lease for ttl. Registering an id again
// with other details replaces them (a restarted instance on a new port).
// Invalid input is fault.Invalid.
func (r *Registry) Register(reg discovery.Registration) error {
	inst := reg.Instance
	if !idRE.MatchString(inst.ID) {
		return fault.New(fault.Invalid, "instance id must be 1-128 letters, digits or ._:- characters")
	}
	if !nameRE.MatchString(inst.Service) {
		return fault.New(fault.Invalid, "service name must be 1-63 lower-case letters, digits, '.' or '-'")
	}
	if len(inst.Endpoints) == 0 || len(inst.Endpoints) > 8 {
		return fault.New(fault.Invalid, "an instance needs 1 to 8 endpoints")
	}
	for name, addr := range inst.Endpoints {
		if name == "" || len(name) > 32 || addr == "" || len(addr) > 256 {
			return fault.New(fault.Invalid, "endpoint %q is malformed", name)
		}
	}
	if len(inst.Metadata) > 32 {
		return fault.New(fault.Invalid, "at most 32 metadata entries")
	}
	ttl := time.Duration(reg.TTLSeconds) * time.Second
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return fault.New(fault.Invalid, "ttlSeconds must be between %d and %d", int(MinTTL/time.Second), int(MaxTTL/time.Second))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.instances[inst.ID]
	switch {
	case !ok:
		r.instances[inst.ID] = &lease{inst: inst, expires: r.now().Add(ttl)}
		r.touch(inst.Service)
	case !sameInstance(old.inst, inst):
		// A new process behind the same id: its health is unknown, so it
		// starts healthy, as a new instance does.
		r.instances[inst.ID] = &lease{inst: inst, expires: r.now().Add(ttl)}
		r.touch(old.inst.Service)
		r.touch(inst.Service)
	default:
		old.expires = r.now().Add(ttl) // a renewal keeps what probes found
	}
	return nil
}

// ServiceOf is the service of the instance id, while it is registered.
func (r *Registry) ServiceOf(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.instances[id]
	if !ok {
		return "", false
	}
	return l.inst.Service, true
}

// Deregister removes the instance id; an unknown id is not an error.
func (r *Registry) Deregister(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.instances[id]; ok {
		delete(r.instances, id)
		r.touch(l.inst.Service)
	}
}

// Expire removes every instance whose lease has lapsed and returns how many.
func (r *Registry) Expire() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	n := 0
	for id, l := range r.instances {
		if now.After(l.expires) {
			delete(r.instances, id)
			r.touch(l.inst.Service)
			n++
		}
	}
	return n
}

// Run expires lapsed leases every interval until ctx is done.
func (r *Registry) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Expire()
		}
	}
}

// Check probes one instance; nil means it can take work.
type Check func(ctx context.Context, inst discovery.Instance) error

// ProbeAll checks every instance at once (each within timeout) and takes
// one out of lookups after failures consecutive failed checks, before its
// lease ends; a passing check puts it back. It returns how many instances
// changed health.
func (r *Registry) ProbeAll(ctx context.Context, check Check, timeout time.Duration, failures int) int {
	r.mu.Lock()
	insts := make([]discovery.Instance, 0, len(r.instances))
	for _, l := range r.instances {
		insts = append(insts, l.inst)
	}
	r.mu.Unlock()

	results := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] = check(cctx, inst)
		}()
	}
	wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	changed := 0
	for i, inst := range insts {
		l, ok := r.instances[inst.ID]
		if !ok || !sameInstance(l.inst, inst) {
			continue // gone or replaced while we probed
		}
		if results[i] == nil {
			l.failures = 0
			if l.unhealthy {
				l.unhealthy = false
				r.touch(inst.Service)
				changed++
			}
			continue
		}
		l.failures++
		if !l.unhealthy && l.failures >= failures {
			l.unhealthy = true
			r.touch(inst.Service)
			changed++
		}
	}
	return changed
}

// touch records a change of service. r.mu must be held.
func (r *Registry) touch(service string) {
	r.rev++
	r.services[service] = r.rev
	close(r.changed)
	r.changed = make(chan struct{})
}

// Lookup returns the live instances of service, sorted by id.
func (r *Registry) Lookup(service string) discovery.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view(service)
}

func (r *Registry) view(service string) discovery.View {
	v := discovery.View{Service: service, Epoch: r.epoch, Revision: r.services[service], Instances: []discovery.Instance{}}
	now := r.now()
	for _, l := range r.instances {
		if l.inst.Service == service && !now.After(l.expires) && !l.unhealthy {
			v.Instances = append(v.Instances, l.inst)
		}
	}
	slices.SortFunc(v.Instances, func(a, b discovery.Instance) int { return compare(a.ID, b.ID) })
	return v
}

// Watch returns service's view once it differs from the revision rev of
// epoch, or when ctx is done (then the current view, unchanged). A view from
// another epoch (the registry restarted) differs by definition.
func (r *Registry) Watch(ctx context.Context, service, epoch string, rev uint64) discovery.View {
	for {
		r.mu.Lock()
		if epoch != r.epoch || r.services[service] != rev {
			v := r.view(service)
			r.mu.Unlock()
			return v
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.Lookup(service)
		}
	}
}

// Catalog returns every service that has live instances.
func (r *Registry) Catalog() discovery.Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := map[string]bool{}
	for _, l := range r.instances {
		names[l.inst.Service] = true
	}
	cat := discovery.Catalog{Epoch: r.epoch, Revision: r.rev, Services: []discovery.View{}}
	for name := range names {
		if v := r.view(name); len(v.Instances) > 0 {
			cat.Services = append(cat.Services, v)
		}
	}
	slices.SortFunc(cat.Services, func(a, b discovery.View) int { return compare(a.Service, b.Service) })
	return cat
}

func sameInstance(a, b discovery.Instance) bool {
	return a.Service == b.Service && fmt.Sprint(a.Endpoints) == fmt.Sprint(b.Endpoints) && fmt.Sprint(a.Metadata) == fmt.Sprint(b.Metadata)
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
