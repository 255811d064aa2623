package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/junction-go/junction/telemetry/telemetrytest"
)

// frame is every frame the gateway's WebSocket sends.
type frame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Detail  string `json:"detail"`
	OrderID int64  `json:"orderId"`
	Orders  string `json:"orders"`
	orderEvent
}

// wsClient is one WebSocket to a gateway; a goroutine reads its frames.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan frame
	// closed gets the close status (or -1 for an error that was no close
	// frame) when the connection ends.
	closed chan websocket.StatusCode
}

// dialWS opens base's /ws, with token in the Authorization header when
// header is set; otherwise the caller authenticates (or does not).
func dialWS(t *testing.T, base, token string, header bool) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if header {
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/ws", opts)
	if err != nil {
		t.Fatalf("dial %s/ws: %v (%v)", base, err, resp)
	}
	c := &wsClient{t: t, conn: conn, frames: make(chan frame, 4096), closed: make(chan websocket.StatusCode, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.closed <- websocket.CloseStatus(err)
				close(c.frames)
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Errorf("frame %s: %v", b, err)
				continue
			}
			c.frames <- f
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write %s: %v", b, err)
	}
}

// until returns the frames read until one satisfies stop (included), or
// fails the test after timeout.
func (c *wsClient) until(timeout time.Duration, what string, stop func(frame) bool) []frame {
	c.t.Helper()
	var got []frame
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("%s: the connection closed after %+v", what, got)
			}
			got = append(got, f)
			if stop(f) {
				return got
			}
		case <-deadline:
			c.t.Fatalf("%s: not within %s; frames so far: %+v", what, timeout, got)
		}
	}
}

// eventsOf returns the event frames of order id among fs.
func eventsOf(fs []frame, id int64) []frame {
	var out []frame
	for _, f := range fs {
		if f.Type == "event" && f.OrderID == id {
			out = append(out, f)
		}
	}
	return out
}

// historyOfFrames names each event frame's entry as historyOf does.
func historyOfFrames(fs []frame) []string {
	evs := make([]orderEvent, len(fs))
	for i, f := range fs {
		evs[i] = f.orderEvent
	}
	return historyOf(evs)
}

// consecutive fails unless fs are seq from+1, from+2, … with no gap and no
// repeat.
func consecutive(t *testing.T, fs []frame, from int64) {
	t.Helper()
	for i, f := range fs {
		if f.Seq != from+int64(i)+1 {
			seqs := make([]int64, len(fs))
			for j, f := range fs {
				seqs[j] = f.Seq
			}
			t.Fatalf("seqs %v: want %d, %d, … with no gap or repeat", seqs, from+1, from+2)
		}
	}
}

// TestWebSocket: a customer following their orders sees one placed now
// go from pending through each step to confirmed, then shipped, in seq
// order; a reconnect with after gets only what it missed; another
// customer is refused the order; a client without a valid token gets
// nothing and is closed with 1008.
func TestWebSocket(t *testing.T) {
	s := startShop(t, nil, nil)
	alice, bob := s.customers[0], s.customers[1]

	// Following "mine" before the order exists: its whole life, live.
	ws := dialWS(t, s.sys.Gateway, alice.token, true)
	ws.send(map[string]any{"type": "subscribe", "orders": "mine"})
	ws.until(10*time.Second, "subscribed to mine", func(f frame) bool { return f.Type == "subscribed" })
	a := &attempt{key: "ws-1", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(alice, a, "")
	if a.id == 0 {
		t.Fatalf("order not placed: %s", a.err)
	}
	got := eventsOf(ws.until(30*time.Second, "the order shipped", func(f frame) bool { return f.OrderID == a.id && f.Status == "shipped" }), a.id)
	consecutive(t, got, 0)
	if h := historyOfFrames(got); !slices.Equal(h, placedHistory) {
		t.Errorf("over the websocket:\n  %v\nwant\n  %v", h, placedHistory)
	}

	// A browser's way in: the token in the first message; then only what
	// came after seq 5, and a subscribed frame at the end of the replay.
	again := dialWS(t, s.sys.Gateway, "", false)
	again.send(map[string]any{"type": "auth", "token": alice.token})
	again.send(map[string]any{"type": "subscribe", "orderId": a.id, "after": 5})
	fs := again.until(10*time.Second, "the replay after 5", func(f frame) bool { return f.Type == "subscribed" })
	tail := eventsOf(fs, a.id)
	consecutive(t, tail, 5)
	if len(tail) != len(placedHistory)-5 || fs[len(fs)-1].Seq != int64(len(placedHistory)) {
		t.Errorf("after 5: %+v, want seq 6 to %d then subscribed at %d", fs, len(placedHistory), len(placedHistory))
	}

	// Bob may not follow Alice's order: not_found, and nothing of it.
	b := dialWS(t, s.sys.Gateway, bob.token, true)
	b.send(map[string]any{"type": "subscribe", "orderId": a.id, "after": 0})
	fs = b.until(10*time.Second, "bob refused", func(f frame) bool { return f.Type == "error" })
	if f := fs[len(fs)-1]; f.Code != "not_found" || f.OrderID != a.id || len(eventsOf(fs, a.id)) != 0 {
		t.Errorf("bob got %+v, want only a not_found error for order %d", fs, a.id)
	}

	// Without authentication: an error frame, a 1008 close, no event.
	for name, c := range map[string]*wsClient{
		"a subscribe first": dialWS(t, s.sys.Gateway, "", false),
		"a forged token":    dialWS(t, s.sys.Gateway, alice.token[:len(alice.token)-4]+"AAAA", true),
	} {
		if name == "a subscribe first" {
			c.send(map[string]any{"type": "subscribe", "orderId": a.id, "after": 0})
		}
		fs := c.until(10*time.Second, name+": refused", func(f frame) bool { return f.Type == "error" })
		if f := fs[len(fs)-1]; len(fs) != 1 || f.Code != "unauthorized" {
			t.Errorf("%s: frames %+v, want one unauthorized error", name, fs)
		}
		select {
		case st := <-c.closed:
			if st != websocket.StatusPolicyViolation {
				t.Errorf("%s: closed with %d, want 1008", name, st)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: not closed", name)
		}
	}

	// Malformed messages are answered, not fatal.
	ws.send("not an object")
	if fs := ws.until(5*time.Second, "a bad message answered", func(f frame) bool { return f.Type == "error" }); fs[len(fs)-1].Code != "bad_request" {
		t.Errorf("a bad message: %+v, want bad_request", fs)
	}
}

// TestWebSocketResumesOnAnotherGateway: with two gateways, the one a
// client follows an order on is stopped (SIGTERM) mid-order; it closes
// with 1001, and the client, connecting to the other with its last seq,
// has every event of the order exactly once.
func TestWebSocketResumesOnAnotherGateway(t *testing.T) {
	// Two seconds between confirmed and shipped: the stop lands there.
	s := startShop(t, []string{"JUNCTION_DISPATCH_DELAY=2s"}, nil)
	alice := s.customers[0]
	addr := freePort(t)
	second := exec.Command(binary, "serve", "gateway", "--registry", s.sys.Registry, "--http-addr", addr)
	// Its own certificate from the run's CA, as an operator would issue.
	second.Env = append(os.Environ(), s.sys.issue(t, "gateway-2", "gateway")...)
	logs := &telemetrytest.Buffer{}
	second.Stdout, second.Stderr = logs, logs
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = second.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = second.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("the second gateway's log:\n%s", tail(logs.String(), 100))
		}
	})
	eventually(t, 30*time.Second, "the second gateway answers", func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz = %d", resp.StatusCode)
		}
		return nil
	})

	a := &attempt{key: "ws-resume", items: []line{{SKU: "JX-MUG", Quantity: 1}}}
	s.place(alice, a, "")
	if a.id == 0 {
		t.Fatalf("order not placed: %s", a.err)
	}
	first := dialWS(t, "http://"+addr, alice.token, true)
	first.send(map[string]any{"type": "subscribe", "orderId": a.id, "after": 0})
	before := eventsOf(first.until(20*time.Second, "confirmed on the second gateway", func(f frame) bool { return f.Status == "confirmed" }), a.id)
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-first.closed:
		if st != websocket.StatusGoingAway {
			t.Errorf("the stopping gateway closed with %d, want 1001", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stopping gateway did not close the websocket")
	}
	// Whatever came between confirmed and the close counts as seen too.
	for f := range first.frames {
		if f.Type == "event" && f.OrderID == a.id {
			before = append(before, f)
		}
	}
	<-exited
	if exitErr != nil {
		t.Errorf("the second gateway's exit after SIGTERM: %v", exitErr)
	}

	resumed := dialWS(t, s.sys.Gateway, alice.token, true)
	last := before[len(before)-1].Seq
	resumed.send(map[string]any{"type": "subscribe", "orderId": a.id, "after": last})
	after := eventsOf(resumed.until(20*time.Second, "shipped on the first gateway", func(f frame) bool { return f.Status == "shipped" }), a.id)
	all := append(before, after...)
	consecutive(t, all, 0)
	if h := historyOfFrames(all); !slices.Equal(h, placedHistory) {
		t.Errorf("across the two gateways:\n  %v\nwant\n  %v", h, placedHistory)
	}
}
