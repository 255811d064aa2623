package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
)

// liveFixture is a Live on a real HTTP server, with an order history in
// memory standing in for order-service (a unit test of the hub's logic:
// the e2e tests run it against the real services and broker).
type liveFixture struct {
	t      *testing.T
	live   *Live
	srv    *httptest.Server
	signer *auth.Signer

	mu      sync.Mutex
	history map[int64][]events.HistoryEntry // by order
	owner   map[int64]int64
}

// testKeys returns a verifier of access tokens and their signer.
func testKeys(t *testing.T) (*auth.Verifier, *auth.Signer) {
	t.Helper()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewVerifier(auth.StaticKeySource(func() auth.JWKS { return auth.JWKS{Keys: []auth.JWK{auth.PublicJWK(key)}} }), nil), auth.NewSigner(key, 0, nil)
}

func newLiveFixture(t *testing.T, limits LiveLimits, server func(*http.Server)) *liveFixture {
	t.Helper()
	verifier, signer := testKeys(t)
	f := &liveFixture{t: t, signer: signer, history: map[int64][]events.HistoryEntry{}, owner: map[int64]int64{}}
	f.live = NewLive(verifier, f.read, limits, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	f.srv = httptest.NewUnstartedServer(f.live)
	if server != nil {
		server(f.srv.Config)
	}
	f.srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.live.Shutdown(ctx)
		f.srv.Close()
	})
	return f
}

// read is the HistoryFunc: the caller's own orders only.
func (f *liveFixture) read(ctx context.Context, token string, id, after int64) ([]events.HistoryEntry, error) {
	p, err := f.live.verifier.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner[id] != p.UserID {
		return nil, fault.New(fault.NotFound, "no order %d", id)
	}
	var out []events.HistoryEntry
	for _, ev := range f.history[id] {
		if ev.Seq > after {
			out = append(out, ev)
		}
	}
	return out, nil
}

// append adds n entries to order id's history (of user) and returns them.
func (f *liveFixture) append(id, user int64, n int) []events.HistoryEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owner[id] = user
	var evs []events.HistoryEntry
	for range n {
		ev := events.HistoryEntry{Seq: int64(len(f.history[id]) + 1), At: time.Now(), Kind: "step", Saga: "place-order", Step: "reserve-stock", Outcome: "sent"}
		f.history[id] = append(f.history[id], ev)
		evs = append(evs, ev)
	}
	return evs
}

// publish hands entries to the hub as the history topic would.
func (f *liveFixture) publish(id, user int64, evs []events.HistoryEntry) {
	body, _ := json.Marshal(events.OrderHistory{OrderID: id, UserID: user, Events: evs})
	if err := f.live.Deliver(context.Background(), &bus.Message{ID: bus.NewID(), Body: body}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *liveFixture) token(user int64) string {
	tok, err := f.signer.Sign(auth.Principal{UserID: user, Username: fmt.Sprint("user", user), Role: auth.RoleCustomer})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// dial connects as user (0: without a token) and returns the connection
// and the HTTP answer of the upgrade.
func (f *liveFixture) dial(user int64, header http.Header) (*websocket.Conn, *http.Response, error) {
	if header == nil {
		header = http.Header{}
	}
	if user != 0 {
		header.Set("Authorization", "Bearer "+f.token(user))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.srv.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: header})
	if c != nil {
		f.t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

type liveFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	OrderID int64  `json:"orderId"`
	Seq     int64  `json:"seq"`
}

func send(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// next reads the next frame; an error is the close. It waits as long as
// the test may run.
func next(c *websocket.Conn) (liveFrame, error) {
	_, b, err := c.Read(context.Background())
	if err != nil {
		return liveFrame{}, err
	}
	var f liveFrame
	err = json.Unmarshal(b, &f)
	return f, err
}

// until reads frames until one of type typ and returns the events before it.
func until(t *testing.T, c *websocket.Conn, typ string) ([]int64, liveFrame) {
	t.Helper()
	var seqs []int64
	for {
		f, err := next(c)
		if err != nil {
			t.Fatalf("waiting for %s after seqs %v: %v", typ, seqs, err)
		}
		if f.Type == typ {
			return seqs, f
		}
		if f.Type == "event" {
			seqs = append(seqs, f.Seq)
		}
	}
}

// TestLiveFillsGaps: what the feed skips is read from the history, so the
// client has every seq once, in order.
func TestLiveFillsGaps(t *testing.T) {
	f := newLiveFixture(t, DefaultLiveLimits, nil)
	c, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := f.append(1, 7, 2)
	send(t, c, map[string]any{"type": "subscribe", "orderId": 1, "after": 0})
	if seqs, _ := until(t, c, "subscribed"); fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("replay: %v, want [1 2]", seqs)
	}
	f.publish(1, 7, first) // late duplicates: dropped
	more := f.append(1, 7, 3)
	f.publish(1, 7, more[2:]) // seq 5 only: 3 and 4 are read
	f.publish(1, 7, more)     // then all three again
	var seqs []int64
	for len(seqs) < 3 {
		fr, err := next(c)
		if err != nil {
			t.Fatalf("after %v: %v", seqs, err)
		}
		seqs = append(seqs, fr.Seq)
	}
	if fmt.Sprint(seqs) != "[3 4 5]" {
		t.Errorf("live: %v, want [3 4 5]", seqs)
	}
	// Someone else's order: not_found, nothing of it.
	other := f.append(2, 8, 1)
	send(t, c, map[string]any{"type": "subscribe", "orderId": 2, "after": 0})
	if seqs, fr := until(t, c, "error"); len(seqs) != 0 || fr.Code != "not_found" || fr.OrderID != 2 {
		t.Errorf("another's order: %v then %+v, want only not_found", seqs, fr)
	}
	f.publish(2, 8, other)
	send(t, c, map[string]any{"type": "subscribe", "orderId": 1, "after": 5})
	if seqs, fr := until(t, c, "subscribed"); len(seqs) != 0 || fr.Seq != 5 {
		t.Errorf("resubscribed at 5: %v then %+v, want nothing then subscribed at 5", seqs, fr)
	}
	// Unsubscribed: order 1's next entry does not come; order 3's does.
	third := f.append(3, 7, 1)
	send(t, c, map[string]any{"type": "subscribe", "orderId": 3, "after": 1})
	until(t, c, "subscribed")
	send(t, c, map[string]any{"type": "unsubscribe", "orderId": 1})
	send(t, c, map[string]any{"type": "subscribe", "orderId": 3, "after": 1}) // a round trip: the unsubscribe is done
	until(t, c, "subscribed")
	f.publish(1, 7, f.append(1, 7, 1))
	third = append(third, f.append(3, 7, 1)...)
	f.publish(3, 7, third[1:])
	if fr, err := next(c); err != nil || fr.OrderID != 3 || fr.Seq != 2 {
		t.Errorf("after unsubscribing order 1: %+v, %v; want order 3's seq 2", fr, err)
	}
}

// TestLiveCaps: past the caps, a clear refusal: 429 for an address, a
// too_many_connections frame and 1013 for a user, 503 for the gateway.
func TestLiveCaps(t *testing.T) {
	f := newLiveFixture(t, LiveLimits{PerUser: 2, PerAddress: 4, Total: 5}, nil)
	for range 2 {
		if _, _, err := f.dial(1, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The user is counted once the server has the token, after the upgrade.
	waitUntil(t, "two connections open", func() bool { return f.live.Stats().Open == 2 })
	c, _, err := f.dial(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fr, _ := next(c); fr.Code != "too_many_connections" {
		t.Errorf("a third connection of one user: %+v, want too_many_connections", fr)
	}
	if _, err := next(c); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Errorf("then %v, want a 1013 close", err)
	}
	waitUntil(t, "the refused one gone", func() bool {
		f.live.mu.Lock()
		defer f.live.mu.Unlock()
		return f.live.open == 2
	})
	if _, _, err := f.dial(2, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.dial(3, nil); err != nil {
		t.Fatal(err)
	}
	if _, resp, err := f.dial(4, nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a fifth from one address: %v %v, want 429", err, resp)
	}
}

// TestLiveRefusals: without a valid token nothing is sent but an
// unauthorized error and a 1008 close; a foreign page's origin is refused.
func TestLiveRefusals(t *testing.T) {
	f := newLiveFixture(t, DefaultLiveLimits, nil)
	f.append(1, 7, 3)
	for name, header := range map[string]http.Header{"no token": nil, "a bad token": {"Authorization": {"Bearer not-a-token"}}} {
		c, _, err := f.dial(0, header)
		if err != nil {
			t.Fatal(err)
		}
		send(t, c, map[string]any{"type": "subscribe", "orderId": 1, "after": 0})
		if fr, _ := next(c); fr.Type != "error" || fr.Code != "unauthorized" {
			t.Errorf("%s: %+v, want unauthorized", name, fr)
		}
		if _, err := next(c); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("%s: then %v, want a 1008 close", name, err)
		}
	}
	if _, resp, err := f.dial(7, http.Header{"Origin": {"http://elsewhere.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a foreign origin: %v %v, want 403", err, resp)
	}
	// A message past the read limit closes the connection (1009).
	c, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, map[string]any{"type": "subscribe", "orders": strings.Repeat("x", readLimit)})
	if _, err := next(c); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("a message past the read limit: %v, want a 1009 close", err)
	}
}

// TestLiveDropsASlowClient: a client that does not read is closed "too
// slow" once its buffer is full; the feed never waits for it, and a
// client that reads gets everything.
func TestLiveDropsASlowClient(t *testing.T) {
	f := newLiveFixture(t, DefaultLiveLimits, nil)
	slow, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	fast, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{slow, fast} {
		send(t, c, map[string]any{"type": "subscribe", "orders": "mine"})
		until(t, c, "subscribed")
	}
	// Rounds of half a buffer of large entries, each once the client that
	// reads has it: the slow one's socket fills (the kernel's buffers,
	// some MB), then its buffer, and it is dropped; the other never is.
	const rounds, per = 60, sendBuffer / 2
	read := make(chan int, rounds*per)
	go func() {
		for n := 1; n <= rounds*per; n++ {
			if _, err := next(fast); err != nil {
				break
			}
			read <- n
		}
		close(read)
	}()
	last := 0
	for r := 1; r <= rounds; r++ {
		evs := f.append(1, 7, per)
		for i := range evs {
			evs[i].Detail = strings.Repeat("d", 8000)
		}
		f.publish(1, 7, evs)
		for n := range read {
			if last = n; n == r*per {
				break
			}
		}
	}
	if last != rounds*per {
		t.Errorf("the client that reads got %d events, want %d", last, rounds*per)
	}
	if st := f.live.Stats(); st.Slow != 1 {
		t.Errorf("%d clients dropped as too slow, want 1", st.Slow)
	}
	var err2 error
	for err2 == nil {
		_, err2 = next(slow)
	}
	if websocket.CloseStatus(err2) != websocket.StatusPolicyViolation && !strings.Contains(err2.Error(), "EOF") {
		t.Errorf("the slow client's end: %v, want a 1008 close (too slow)", err2)
	}
}

// TestLiveOutlivesTheServerDeadlines: a WebSocket lasts past the HTTP
// server's read and write timeouts.
func TestLiveOutlivesTheServerDeadlines(t *testing.T) {
	const timeout = 200 * time.Millisecond
	f := newLiveFixture(t, DefaultLiveLimits, func(s *http.Server) { s.ReadTimeout, s.WriteTimeout = timeout, timeout })
	c, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, map[string]any{"type": "subscribe", "orders": "mine"})
	until(t, c, "subscribed")
	// Past the server's deadlines: time passing is what is tested.
	time.Sleep(3 * timeout)
	f.publish(1, 7, f.append(1, 7, 1))
	if fr, err := next(c); err != nil || fr.Type != "event" || fr.Seq != 1 {
		t.Errorf("after the server's deadlines: %+v, %v; want event seq 1", fr, err)
	}
}

// TestLiveShutdown: a stop closes every connection with 1001.
func TestLiveShutdown(t *testing.T) {
	f := newLiveFixture(t, DefaultLiveLimits, nil)
	c, _, err := f.dial(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, map[string]any{"type": "subscribe", "orders": "mine"})
	until(t, c, "subscribed")
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.live.Shutdown(ctx)
		close(done)
	}()
	if _, err := next(c); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("on shutdown: %v, want a 1001 close", err)
	}
	<-done
	if _, resp, err := f.dial(7, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a connection after the stop: %v %v, want 503", err, resp)
	}
}

// waitUntil polls cond until it holds, or fails the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
