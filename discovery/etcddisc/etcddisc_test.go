package etcddisc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/discovery/discoverytest"
	"github.com/junction-go/junction/discovery/etcddisc"
	"github.com/junction-go/junction/discovery/etcddisc/etcdtest"
)

func startEtcd(t *testing.T) *clientv3.Client {
	_, cli := etcdtest.Start(t)
	return cli
}

func TestEtcdBackend(t *testing.T) {
	cli := startEtcd(t)
	n := 0
	discoverytest.Run(t, func(t *testing.T) discoverytest.Backend {
		n++ // each test its own prefix, so none sees another's instances
		d := etcddisc.New(cli, etcddisc.Config{Prefix: fmt.Sprintf("/test%d/", n)})
		return discoverytest.Registered(d, d)
	})
}

// TestLeaseLapsesWhenTheHolderDies: an instance whose process dies without
// revoking (no renewals, no goodbye) leaves when its lease runs out, and a
// watcher sees it leave without polling.
func TestLeaseLapsesWhenTheHolderDies(t *testing.T) {
	cli := startEtcd(t)
	d := etcddisc.New(cli, etcddisc.Config{Prefix: "/lapse/"})
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/lapse/svc/dead-1", `{"id":"dead-1","service":"svc","endpoints":{"http":"127.0.0.1:9"}}`, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	v, err := d.Watch(ctx, "svc", discovery.View{})
	if err != nil || len(v.Instances) != 1 || v.Instances[0].Endpoints["http"] != "127.0.0.1:9" {
		t.Fatalf("Lookup = %+v, %v; want dead-1", v, err)
	}
	start := time.Now()
	next, err := d.Watch(ctx, "svc", v)
	if err != nil || len(next.Instances) != 0 || next.Revision <= v.Revision {
		t.Fatalf("Watch after the lease ran out = %+v, %v; want no instance at a later revision", next, err)
	}
	t.Logf("instance gone %v after its last renewal (lease 2 s)", time.Since(start).Round(time.Millisecond))
}

// TestMalformedKeysAreLeftOut: a key under the prefix that is not an
// instance does not hide the ones that are.
func TestMalformedKeysAreLeftOut(t *testing.T) {
	cli := startEtcd(t)
	d := etcddisc.New(cli, etcddisc.Config{Prefix: "/bad/"})
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/bad/svc/junk", "not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/bad/svc/ok-1", `{"id":"ok-1","endpoints":{"http":"127.0.0.1:9"}}`); err != nil {
		t.Fatal(err)
	}
	v, err := d.Lookup(ctx, "svc")
	if err != nil || len(v.Instances) != 1 || v.Instances[0].ID != "ok-1" || v.Instances[0].Service != "svc" {
		t.Errorf("Lookup = %+v, %v; want only ok-1 of svc", v, err)
	}
}
