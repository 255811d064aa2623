package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// tool finds a program of Debian's prometheus package; without it the
// test skips, or fails when JUNCTION_REQUIRE_ALL=1.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatalf("%s is required (JUNCTION_REQUIRE_ALL=1): %v (apt-get install prometheus)", name, err)
		}
		t.Skipf("no %s (%v); apt-get install prometheus", name, err)
	}
	return p
}

// TestAlertRules: the shipped Prometheus configuration and alert rules are
// valid, and each alert fires when it should and not before (promtool's
// rule unit tests, deploy/prometheus/rules/junction_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	dir := filepath.Join("..", "deploy", "prometheus")
	// The syntax only: the certificates it names are in a data folder
	// (TestPrometheusScrapesEveryInstance runs it against a real one).
	for _, args := range [][]string{
		{"check", "config", "--syntax-only", filepath.Join(dir, "prometheus.yml")},
		{"check", "rules", filepath.Join(dir, "rules", "junction.yml")},
		{"test", "rules", filepath.Join(dir, "rules", "junction_test.yml")},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestPrometheusScrapesEveryInstance runs Debian's Prometheus with the
// shipped configuration (pointed at this system's registry) against a
// running system: it finds every instance through the registry's service
// discovery and every one is up.
func TestPrometheusScrapesEveryInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	prometheus := tool(t, "prometheus")
	s := startSystem(t, t.TempDir())
	work := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.NewReplacer("127.0.0.1:7070", strings.TrimPrefix(s.Registry, "https://"), "/var/lib/junction", s.Data).Replace(string(cfg)))
	if err := os.MkdirAll(filepath.Join(work, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "rules", "junction.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"prometheus.yml": cfg, "rules/junction.yml": rules} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(work, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(work, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logs := &telemetrytest.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	cat, err := s.registry(t).Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := 1 // the registry
	for _, v := range cat.Services {
		want += len(v.Instances)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	eventually(t, 60*time.Second, "Prometheus to scrape every instance", func() error {
		resp, err := hc.Get("http://" + addr + "/api/v1/targets?state=active")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		up, down := 0, []string{}
		for _, tg := range body.Data.ActiveTargets {
			if tg.Health == "up" {
				up++
			} else {
				down = append(down, fmt.Sprintf("%s %s: %s %s", tg.Labels["service"], tg.Labels["instance_id"], tg.Health, tg.LastError))
			}
		}
		if up != want || len(down) > 0 {
			return fmt.Errorf("%d of %d targets up; not up: %v\n%s", up, want, down, logs.String())
		}
		return nil
	})
}
