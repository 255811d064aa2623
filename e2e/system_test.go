// Package e2e tests the whole system: it builds the junction binary once,
// runs `junction up` on a temporary data folder and free ports, and talks to
// it only over its public interfaces, as a user would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/junction-go/junction/sqldb/sqlite" // the tests read the services' SQLite files
	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// binary is the junction binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test here starts the whole system; none runs with -short.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "junction-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "junction")
	build := exec.Command("go", "build", "-o", binary, "../cmd/junction")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build junction:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// system is a running `junction up`.
type system struct {
	cmd      *exec.Cmd
	out      *telemetrytest.Buffer
	done     chan error
	Gateway  string
	Registry string
	Broker   string
	Links    string // the Toxiproxy API of --fault-links
	Traces   string // up's trace store (its base URL), when it runs one
	Data     string
	Ready    time.Duration
}

// startSystem runs `junction up` on data with args and waits for its ready
// line. The system is stopped at the end of the test if the test did not
// stop it.
func startSystem(t testing.TB, data string, args ...string) *system {
	t.Helper()
	return startSystemEnv(t, data, nil, args...)
}

// startSystemEnv is startSystem with env (KEY=value) added to the
// environment every process inherits.
func startSystemEnv(t testing.TB, data string, env []string, args ...string) *system {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(binary, append([]string{"up", "--data", data, "--port", "0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	s := &system{cmd: cmd, out: &telemetrytest.Buffer{}, done: make(chan error, 1), Data: data}
	cmd.Stdout = io.MultiWriter(s.out, pw)
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start junction up: %v", err)
	}
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.done <- err
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			for prefix, dst := range map[string]*string{"gateway:": &s.Gateway, "registry:": &s.Registry, "broker:": &s.Broker, "links:": &s.Links, "traces:": &s.Traces} {
				if v, ok := strings.CutPrefix(line, prefix); ok {
					*dst, _, _ = strings.Cut(strings.TrimSpace(v), " ")
				}
			}
			if strings.HasPrefix(line, "data:") && !signalled {
				if !strings.HasSuffix(s.Traces, "/v1/traces") {
					s.Traces = "" // sent elsewhere: no store
				}
				s.Traces = strings.TrimSuffix(s.Traces, "/v1/traces")
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case err := <-s.done:
		t.Fatalf("junction up exited before ready: %v\n%s", err, s.out.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("junction up not ready within 60s\n%s", s.out.String())
	}
	s.Ready = time.Since(start)
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.stop(t)
		}
		if t.Failed() {
			// What went wrong is usually a warning far above the tail,
			// under the access log's lines.
			t.Logf("junction up's warnings and errors:\n%s", tail(warnings(s.out.String()), 100))
			t.Logf("junction up output:\n%s", tail(s.out.String(), 200))
			if dir := os.Getenv("JUNCTION_E2E_LOGS"); dir != "" {
				name := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".log")
				if err := os.WriteFile(name, []byte(s.out.String()), 0o644); err == nil {
					t.Logf("full output in %s", name)
				}
			}
		}
	})
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *system) stop(t testing.TB) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("junction up exited with %v", err)
		}
	case <-time.After(45 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Errorf("junction up did not stop within 45s")
		<-s.done
	}
}

// logRecord is one JSON log line of an instance.
type logRecord struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	Path string    `json:"path"`
	Type string    `json:"type"`
	// By and Instance are the ops dashboard's actions: who did what to
	// which instance.
	By       string `json:"by"`
	Instance string `json:"instance"`
}

// instanceLog returns instance id's log records so far, in order, from
// the output of `junction up` ("<instance> | {json}" per line).
func (s *system) instanceLog(id string) []logRecord {
	var recs []logRecord
	sc := bufio.NewScanner(strings.NewReader(s.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		prefix, rest, ok := strings.Cut(sc.Text(), "|")
		if !ok || strings.TrimSpace(prefix) != id {
			continue
		}
		var rec logRecord
		if json.Unmarshal([]byte(strings.TrimSpace(rest)), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// freePort returns a loopback address with a port nobody listens on now,
// for a server the test starts (or for a peer that must not answer).
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// warnings returns the lines of out logged at WARN or ERROR.
func warnings(out string) string {
	var w []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			w = append(w, l)
		}
	}
	return strings.Join(w, "\n")
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// processesOf returns the pids of every running process started from the
// binary at path.
func processesOf(path string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if zombie(stat) {
			continue
		}
		if strings.TrimSuffix(exe, " (deleted)") == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// client is a user of the REST API.
type client struct {
	t     testing.TB
	base  string
	token string
	http  *http.Client
}

func newClient(t testing.TB, base string) *client {
	return &client{t: t, base: base, http: &http.Client{Timeout: 10 * time.Second}}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (c *client) do(method, path string, body any, header ...string) response {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// login signs in and keeps the token for later calls.
func (c *client) login(username, password string) {
	c.t.Helper()
	r := c.do("POST", "/api/auth/login", map[string]string{"username": username, "password": password})
	if r.Status != http.StatusOK {
		c.t.Fatalf("login %s = %d %s, want 200", username, r.Status, r.Body)
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
		TokenType   string `json:"tokenType"`
		ExpiresIn   int    `json:"expiresIn"`
	}
	r.decode(c.t, &tok)
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.AccessToken == "" {
		c.t.Fatalf("login %s = %s, want a Bearer token for 900 s", username, r.Body)
	}
	c.token = tok.AccessToken
}

// eventually retries cond every 50 ms until it returns nil or timeout
// passes, and fails the test with cond's last error.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
