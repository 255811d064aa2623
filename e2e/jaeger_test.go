package e2e

import (
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

// jaegerBinary is the Jaeger all-in-one that scripts/jaeger builds, or the
// one JUNCTION_JAEGER names; without one the test skips, or fails under
// JUNCTION_REQUIRE_ALL=1.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("JUNCTION_JAEGER")
	if path == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			path = filepath.Join(strings.TrimSpace(string(out)), "bin", "jaeger-v1.76.0")
		}
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
			t.Fatalf("Jaeger is required (JUNCTION_REQUIRE_ALL=1) but %q is missing: run scripts/jaeger", path)
		}
		t.Skipf("no Jaeger at %q (scripts/jaeger builds it)", path)
	}
	return path
}

// startJaeger runs Jaeger with memory storage, OTLP/HTTP in and its query
// API out on free ports, and returns those two base URLs once it answers.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	bin := jaegerBinary(t)
	otlpAddr, queryAddr, grpcAddr := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, queryAddr, grpcAddr, otlpAddr)
	dir := t.TempDir()
	file := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &telemetrytest.Buffer{}
	cmd := exec.Command(bin, "--config", file)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("jaeger output:\n%s", tail(out.String(), 40))
		}
	})
	query = "http://" + queryAddr
	eventually(t, 30*time.Second, "Jaeger's query API", func() error {
		resp, err := http.Get(query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /api/services = %d", resp.StatusCode)
		}
		return nil
	})
	return "http://" + otlpAddr, query
}

// TestOrderTraceInJaeger: with the standard OTEL_EXPORTER_OTLP_ENDPOINT (every
// service exports straight to Jaeger) and with `up --otlp` (the trace store
// forwards), a real order's trace is found whole through Jaeger's query
// API: every hop of the order, under one root.
func TestOrderTraceInJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system; skipped with -short")
	}
	for _, mode := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "--otlp"} {
		t.Run(mode, func(t *testing.T) {
			otlp, query := startJaeger(t)
			env, args := []string{"JUNCTION_TRACES_PER_SECOND=-1"}, []string(nil)
			if mode == "--otlp" {
				args = []string{"--otlp", otlp}
			} else {
				env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
			}
			s := startShop(t, env, nil, args...)
			if (s.sys.Traces != "") != (mode == "--otlp") {
				t.Fatalf("trace store %q with %s", s.sys.Traces, mode)
			}
			a := &attempt{key: "jaeger-1", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
			s.place(s.customers[0], a, "")
			if a.id == 0 {
				t.Fatalf("order not placed: %s", a.err)
			}
			// The order's trace id, as the gateway's access log tells it.
			var traceID string
			eventually(t, 10*time.Second, "the gateway's log line of the POST", func() error {
				for _, l := range strings.Split(s.sys.out.String(), "\n") {
					if strings.HasPrefix(l, "gateway-1") && strings.Contains(l, `"path":"/api/orders"`) && strings.Contains(l, `"method":"POST"`) {
						_, rest, ok := strings.Cut(l, `"trace_id":"`)
						if ok && len(rest) >= 32 {
							traceID = rest[:32]
							return nil
						}
					}
				}
				return fmt.Errorf("no gateway log line for POST /api/orders with a trace_id")
			})
			var jt struct {
				Data []struct {
					Spans []struct {
						SpanID        string `json:"spanID"`
						OperationName string `json:"operationName"`
						ProcessID     string `json:"processID"`
						References    []struct {
							RefType string `json:"refType"`
							SpanID  string `json:"spanID"`
						} `json:"references"`
					} `json:"spans"`
					Processes map[string]struct {
						ServiceName string `json:"serviceName"`
					} `json:"processes"`
				} `json:"data"`
			}
			eventually(t, 30*time.Second, "order "+traceID+"'s whole trace in Jaeger", func() error {
				jt.Data = nil
				r := newClient(t, query).do("GET", "/api/traces/"+traceID, nil)
				if r.Status == http.StatusOK {
					r.decode(t, &jt)
				}
				if r.Status != http.StatusOK || len(jt.Data) != 1 {
					return fmt.Errorf("GET /api/traces/%s = %d, %d traces", traceID, r.Status, len(jt.Data))
				}
				have := map[string]bool{}
				for _, sp := range jt.Data[0].Spans {
					have[jt.Data[0].Processes[sp.ProcessID].ServiceName+" "+sp.OperationName] = true
				}
				for svc, names := range wholeOrder {
					for _, n := range names {
						if !have[svc+" "+n] {
							return fmt.Errorf("no span %q of %s yet (%d spans)", n, svc, len(jt.Data[0].Spans))
						}
					}
				}
				return nil
			})
			ids := map[string]bool{}
			for _, sp := range jt.Data[0].Spans {
				ids[sp.SpanID] = true
			}
			// A send span is its create span's child and is linked to it:
			// Jaeger shows that as one reference (FOLLOWS_FROM).
			roots := 0
			for _, sp := range jt.Data[0].Spans {
				if len(sp.References) == 0 {
					roots++
				}
				for _, r := range sp.References {
					if !ids[r.SpanID] {
						t.Errorf("span %q refers to %s (%s), which is not in Jaeger's trace", sp.OperationName, r.SpanID, r.RefType)
					}
				}
			}
			if roots != 1 {
				t.Errorf("%d root spans in Jaeger's trace, want 1", roots)
			}
			t.Logf("%s: order %d's trace %s in Jaeger: %d spans", mode, a.id, traceID, len(jt.Data[0].Spans))
		})
	}
}
