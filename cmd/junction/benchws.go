package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/discovery"
)

// wsBench is junction bench ws: many WebSockets open at once, each
// following the orders placed for it, measured from each change's time at
// order-service (the history entry's "at") to its frame at the client, and
// the same orders' verdicts read by a long poll beside them.
type wsBench struct {
	cfg    benchConfig
	hc     *http.Client
	base   string
	tokens []string

	live, verdictWS, verdictPoll *hdrhistogram.Histogram
	mu                           sync.Mutex
	frames, replayed             atomic.Int64
	placed, refused, pollErrors  atomic.Int64
}

// wsClient is one of the bench's connections.
type wsClient struct {
	b     *wsBench
	conn  *websocket.Conn
	token string
	mu    sync.Mutex
	// caughtUp: the orders whose replay ended; frames after it are live.
	caughtUp map[int64]bool
}

func benchWS(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) error {
	if cfg.clients < 1 || cfg.clients > 50000 || cfg.rate <= 0 || cfg.rate > 10000 || cfg.duration <= 0 {
		return usagef("bench ws: --clients must be in [1, 50000], --rate in (0, 10000], --duration positive")
	}
	b := &wsBench{cfg: cfg, base: strings.TrimSuffix(cfg.target, "/"),
		hc:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 15 * time.Second},
		live: hdrhistogram.New(1, 60_000_000, 3), verdictWS: hdrhistogram.New(1, 60_000_000, 3), verdictPoll: hdrhistogram.New(1, 60_000_000, 3)}
	for _, user := range []string{"alice", "bob"} {
		c := cfg
		c.username = user
		tok, err := benchLogin(ctx, b.hc, c)
		if err != nil {
			return err
		}
		b.tokens = append(b.tokens, tok)
	}
	before, err := b.gatewayMemory(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "bench ws: no memory figures: %v\n", err)
	}
	started := time.Now()
	clients, err := b.connect(ctx, stderr)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range clients {
			c.conn.CloseNow()
		}
	}()
	opened := time.Since(started)
	after, _ := b.gatewayMemory(ctx)
	fmt.Fprintf(stderr, "bench ws: %d connections open in %v; placing %.0f orders/s for %v\n", len(clients), opened.Round(time.Millisecond), cfg.rate, cfg.duration)

	// Orders at the rate, each for the next client in turn; every order is
	// followed by its client and long-polled beside it.
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	defer tick.Stop()
	end := time.After(cfg.duration)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
		case <-tick.C:
			c := clients[i%len(clients)]
			wg.Go(func() { b.order(ctx, c, i) })
			continue
		}
		break
	}
	wg.Wait()
	// The long polls have their verdicts; the frames of the same changes
	// are due about now.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		b.mu.Lock()
		n := b.verdictWS.TotalCount()
		b.mu.Unlock()
		if n >= b.placed.Load() {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}

	pct := func(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	res := map[string]any{
		"clients": len(clients), "connectSeconds": opened.Seconds(), "ordersPlaced": b.placed.Load(), "ordersRefused": b.refused.Load(),
		"liveFrames": b.frames.Load(), "replayedFrames": b.replayed.Load(), "longPollErrors": b.pollErrors.Load(),
		"liveMs":        map[string]float64{"p50": pct(b.live, 50), "p99": pct(b.live, 99), "max": float64(b.live.Max()) / 1000},
		"verdictWsMs":   map[string]float64{"p50": pct(b.verdictWS, 50), "p99": pct(b.verdictWS, 99)},
		"verdictPollMs": map[string]float64{"p50": pct(b.verdictPoll, 50), "p99": pct(b.verdictPoll, 99)},
	}
	if before.rss > 0 && after.rss > 0 {
		res["rssBytesPerConnection"] = (after.rss - before.rss) / float64(len(clients))
		res["heapBytesPerConnection"] = (after.heap - before.heap) / float64(len(clients))
	}
	if cfg.asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "bench ws: %d clients, %d orders placed (%d refused)\n", len(clients), b.placed.Load(), b.refused.Load())
	fmt.Fprintf(stdout, "  live frames:   %d, change at order-service to frame at the client: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d more replayed on subscribe)\n",
		b.frames.Load(), pct(b.live, 50), pct(b.live, 99), float64(b.live.Max())/1000, b.replayed.Load())
	fmt.Fprintf(stdout, "  verdict (confirmed/rejected), the same orders: websocket p50 %.1f ms, p99 %.1f ms; long poll (?wait=) p50 %.1f ms, p99 %.1f ms (%d poll errors)\n",
		pct(b.verdictWS, 50), pct(b.verdictWS, 99), pct(b.verdictPoll, 50), pct(b.verdictPoll, 99), b.pollErrors.Load())
	if v, ok := res["rssBytesPerConnection"]; ok {
		fmt.Fprintf(stdout, "  gateway memory per connection: %.1f KiB resident, %.1f KiB heap\n", v.(float64)/1024, res["heapBytesPerConnection"].(float64)/1024)
	}
	return nil
}

// connect opens cfg.clients WebSockets, alternately as alice and bob. On a
// loopback target each connects from its own 127.0.0.x address in turns of
// 400, so the gateway's cap per address (500) is not what is measured; its
// cap per user (500) must be raised for more than 1,000 clients
// (JUNCTION_WS_PER_USER=10000 junction up).
func (b *wsBench) connect(ctx context.Context, stderr io.Writer) ([]*wsClient, error) {
	u, err := url.Parse(b.base)
	if err != nil {
		return nil, usagef("bench ws: --target: %v", err)
	}
	wsURL := "ws://" + u.Host + "/ws"
	loopback := false
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		loopback = true
	}
	clients := make([]*wsClient, b.cfg.clients)
	errs := make(chan error, b.cfg.clients)
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dialer := &net.Dialer{Timeout: 10 * time.Second}
			if loopback {
				dialer.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/400/250), byte(2+(i/400)%250))}
			}
			hc := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			token := b.tokens[i%len(b.tokens)]
			conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
			if err != nil {
				if resp != nil {
					err = fmt.Errorf("%w (%s)", err, resp.Status)
				}
				errs <- err
				return
			}
			c := &wsClient{b: b, conn: conn, token: token, caughtUp: map[int64]bool{}}
			clients[i] = c
			go c.read(ctx)
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("bench ws: connect: %v (more than 500 per user need JUNCTION_WS_PER_USER raised on the gateway)", err)
	}
	return clients, nil
}

// read takes the client's frames.
func (c *wsClient) read(ctx context.Context) {
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		var f struct {
			Type    string    `json:"type"`
			Code    string    `json:"code"`
			OrderID int64     `json:"orderId"`
			Status  string    `json:"status"`
			Kind    string    `json:"kind"`
			At      time.Time `json:"at"`
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "subscribed":
			c.mu.Lock()
			c.caughtUp[f.OrderID] = true
			c.mu.Unlock()
		case "event":
			c.mu.Lock()
			live := c.caughtUp[f.OrderID]
			c.mu.Unlock()
			if !live {
				c.b.replayed.Add(1)
				continue
			}
			us := max(1, now.Sub(f.At).Microseconds())
			c.b.mu.Lock()
			_ = c.b.live.RecordValue(us)
			if f.Kind == "status" && (f.Status == "confirmed" || f.Status == "rejected") {
				_ = c.b.verdictWS.RecordValue(us)
			}
			c.b.mu.Unlock()
			c.b.frames.Add(1)
		}
	}
}

// order places one order for c, has c follow it, and long-polls its
// verdict beside the WebSocket.
func (b *wsBench) order(ctx context.Context, c *wsClient, n int) {
	var o struct {
		OrderID int64 `json:"orderId"`
	}
	err := benchCall(ctx, b.hc, http.MethodPost, b.base+"/api/orders", c.token, map[string]any{"items": []map[string]any{{"sku": "JX-PIN", "quantity": 1}}}, &o,
		"Idempotency-Key", fmt.Sprintf("bench-ws-%d-%d", time.Now().UnixNano(), n))
	if err != nil {
		b.refused.Add(1)
		return
	}
	b.placed.Add(1)
	msg, _ := json.Marshal(map[string]any{"type": "subscribe", "orderId": o.OrderID, "after": 0})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = c.conn.Write(wctx, websocket.MessageText, msg)
	cancel()
	var got struct {
		Status    string    `json:"status"`
		UpdatedAt time.Time `json:"updatedAt"`
	}
	if err := benchCall(ctx, b.hc, http.MethodGet, fmt.Sprintf("%s/api/orders/%d?wait=10s", b.base, o.OrderID), c.token, nil, &got); err != nil || got.Status == "pending" {
		b.pollErrors.Add(1)
		return
	}
	b.mu.Lock()
	_ = b.verdictPoll.RecordValue(max(1, time.Since(got.UpdatedAt).Microseconds()))
	b.mu.Unlock()
}

type memory struct{ rss, heap float64 }

// gatewayMemory sums the resident and heap bytes of the gateway's
// instances, from their metrics (found in the registry).
func (b *wsBench) gatewayMemory(ctx context.Context) (memory, error) {
	if b.cfg.registry == "" {
		return memory{}, fmt.Errorf("--registry is needed to read the gateway's memory")
	}
	reg, err := b.cfg.registryClient()
	if err != nil {
		return memory{}, err
	}
	view, err := reg.Lookup(ctx, services.Gateway)
	if err != nil || len(view.Instances) == 0 {
		return memory{}, fmt.Errorf("no gateway in the registry: %v", err)
	}
	var m memory
	for _, in := range view.Instances {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Endpoints[discovery.EndpointHTTP]+"/metrics", nil)
		resp, err := b.hc.Do(req)
		if err != nil {
			return memory{}, err
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return memory{}, err
		}
		if f := fams["process_resident_memory_bytes"]; f != nil && len(f.GetMetric()) > 0 {
			m.rss += f.GetMetric()[0].GetGauge().GetValue()
		}
		if f := fams["go_memstats_heap_inuse_bytes"]; f != nil && len(f.GetMetric()) > 0 {
			m.heap += f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return m, nil
}
