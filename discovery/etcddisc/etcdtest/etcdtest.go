// Package etcdtest runs a real etcd for tests: Debian's etcd (package
// etcd-server) on free loopback ports with its data in a temporary
// folder. Without the binary a test skips, or fails when
// JUNCTION_REQUIRE_ALL=1.
package etcdtest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/junction-go/junction/discovery/etcddisc"
)

// Start runs etcd until the test ends and returns its client endpoint
// (host:port) and a client of it.
func Start(t testing.TB) (endpoint string, cli *clientv3.Client) {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatal("etcd is required (JUNCTION_REQUIRE_ALL=1) but not installed: apt-get install etcd-server")
		}
		t.Skip("etcd is not installed (apt-get install etcd-server); skipping the etcd backend")
	}
	client, peer := freePort(t), freePort(t)
	cmd := exec.Command(bin,
		"--name", "test", "--data-dir", t.TempDir(),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cli, err = etcddisc.Dial([]string{client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return client, cli
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s did not answer within 20 s: %v", client, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
