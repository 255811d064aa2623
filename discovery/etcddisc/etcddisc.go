// Package etcddisc keeps service instances in etcd: each instance is a key
// <prefix><service>/<id> holding its JSON description, attached to a lease
// the instance keeps alive, so a crashed instance disappears when its lease
// runs out. Lookups read the service's prefix; watches use etcd's own watch
// from the revision last seen, so a change is seen at once and a quiet
// service costs nothing.
package etcddisc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/junction-go/junction/discovery"
)

// DefaultPrefix is where instances are kept unless Config says otherwise.
const DefaultPrefix = "/junction/services/"

// Config says where in etcd the instances are.
type Config struct {
	// Prefix of every instance key; DefaultPrefix when empty.
	Prefix string
	// MaxWait bounds one Watch that sees no change; default 30 s.
	MaxWait time.Duration
}

// Discovery is a discovery.Source and discovery.Registrar over an etcd
// client. It is safe for concurrent use; it does not close the client.
type Discovery struct {
	cli *clientv3.Client
	cfg Config

	mu    sync.Mutex
	epoch string // the cluster id last seen
}

var (
	_ discovery.Source    = (*Discovery)(nil)
	_ discovery.Registrar = (*Discovery)(nil)
)

// New returns discovery over cli.
func New(cli *clientv3.Client, cfg Config) *Discovery {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	return &Discovery{cli: cli, cfg: cfg}
}

// Dial connects to the etcd cluster at endpoints (host:port, comma
// separated allowed).
func Dial(endpoints []string) (*clientv3.Client, error) {
	var eps []string
	for _, e := range endpoints {
		for p := range strings.SplitSeq(e, ",") {
			if p = strings.TrimSpace(p); p != "" {
				eps = append(eps, p)
			}
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("etcd discovery: no endpoint")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd discovery: %w", err)
	}
	return cli, nil
}

func (d *Discovery) servicePrefix(service string) string { return d.cfg.Prefix + service + "/" }

// Lookup returns the instances of service at etcd's current revision.
func (d *Discovery) Lookup(ctx context.Context, service string) (discovery.View, error) {
	resp, err := d.cli.Get(ctx, d.servicePrefix(service), clientv3.WithPrefix())
	if err != nil {
		return discovery.View{}, fmt.Errorf("etcd discovery %s: %w", service, err)
	}
	v := discovery.View{
		Service:   service,
		Epoch:     fmt.Sprintf("%x", resp.Header.ClusterId),
		Revision:  uint64(resp.Header.Revision),
		Instances: []discovery.Instance{},
	}
	d.mu.Lock()
	d.epoch = v.Epoch
	d.mu.Unlock()
	for _, kv := range resp.Kvs {
		var inst discovery.Instance
		// A key that is not an instance (written by hand, or by a newer
		// version) is left out rather than failing the whole service.
		if json.Unmarshal(kv.Value, &inst) != nil || inst.ID == "" {
			continue
		}
		inst.Service = service
		v.Instances = append(v.Instances, inst)
	}
	slices.SortFunc(v.Instances, func(a, b discovery.Instance) int { return strings.Compare(a.ID, b.ID) })
	return v, nil
}

// Watch waits for a change under service's prefix after prev's revision
// (or MaxWait) and returns the current view. A zero prev, or one from
// another cluster, returns at once.
func (d *Discovery) Watch(ctx context.Context, service string, prev discovery.View) (discovery.View, error) {
	d.mu.Lock()
	epoch := d.epoch
	d.mu.Unlock()
	if prev.Service == "" || prev.Epoch != epoch {
		return d.Lookup(ctx, service)
	}
	wctx, cancel := context.WithTimeout(ctx, d.cfg.MaxWait)
	defer cancel()
	wch := d.cli.Watch(clientv3.WithRequireLeader(wctx), d.servicePrefix(service),
		clientv3.WithPrefix(), clientv3.WithRev(int64(prev.Revision)+1))
	select {
	case <-wctx.Done():
		if ctx.Err() != nil {
			return discovery.View{}, ctx.Err()
		}
		return prev, nil // nothing changed
	case <-wch:
		// Events, a compaction past prev, or a lost leader: read afresh.
	}
	return d.Lookup(ctx, service)
}

// KeepAlive puts inst under a lease of ttl and keeps the lease alive until
// ctx is done, then revokes it (the key goes with it). When the lease is
// lost (etcd unreachable for longer than ttl), it takes a new one and puts
// the instance again.
func (d *Discovery) KeepAlive(ctx context.Context, inst discovery.Instance, ttl time.Duration, onErr func(error)) {
	val, err := json.Marshal(inst)
	if err != nil {
		if onErr != nil {
			onErr(err)
		}
		<-ctx.Done()
		return
	}
	key := d.servicePrefix(inst.Service) + inst.ID
	retry := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := d.hold(ctx, key, string(val), ttl)
		if ctx.Err() != nil {
			return
		}
		if onErr != nil {
			onErr(fmt.Errorf("etcd discovery: %s: %w", inst.ID, err))
		}
		if time.Since(started) > ttl {
			retry = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(retry*2, max(ttl/3, 100*time.Millisecond))
	}
}

// hold grants a lease, puts key under it and keeps it alive until ctx is
// done (then revokes it and returns nil) or the lease is lost.
func (d *Discovery) hold(ctx context.Context, key, val string, ttl time.Duration) error {
	lease, err := d.cli.Grant(ctx, max(int64(ttl/time.Second), 1))
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	revoke := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = d.cli.Revoke(rctx, lease.ID)
	}
	if _, err := d.cli.Put(ctx, key, val, clientv3.WithLease(lease.ID)); err != nil {
		revoke()
		return fmt.Errorf("put: %w", err)
	}
	ch, err := d.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		revoke()
		return fmt.Errorf("keep alive: %w", err)
	}
	for range ch {
		// Each answer is a renewal; the channel closes when ctx is done or
		// the lease cannot be renewed.
	}
	if ctx.Err() != nil {
		revoke()
		return nil
	}
	return errors.New("lease lost")
}
