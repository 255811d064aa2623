package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// LiveLimits bound the gateway's WebSockets (GET /ws, docs/websocket.md).
type LiveLimits struct {
	// PerUser, PerAddress and Total cap the connections open at once: of
	// one signed-in user, from one client address, and in all.
	PerUser, PerAddress, Total int
	// Origins are the origins (host patterns, as coder/websocket's
	// OriginPatterns: "shop.example.com", "*.example.com") a browser page
	// may connect from besides the gateway's own.
	Origins []string
}

// DefaultLiveLimits leave room for a busy shop on one gateway.
var DefaultLiveLimits = LiveLimits{PerUser: 500, PerAddress: 500, Total: 10000}

// Validate reports the first limit the gateway cannot use.
func (l LiveLimits) Validate() error {
	switch {
	case l.PerUser < 1:
		return fmt.Errorf("ws-per-user %d: must be at least 1", l.PerUser)
	case l.PerAddress < 1:
		return fmt.Errorf("ws-per-address %d: must be at least 1", l.PerAddress)
	case l.Total < 1:
		return fmt.Errorf("ws-max %d: must be at least 1", l.Total)
	}
	return nil
}

// The WebSocket's fixed bounds.
const (
	// authWait is how long a connection without an Authorization header
	// has to send its auth message.
	authWait = 5 * time.Second
	// readLimit is the largest message a client may send.
	readLimit = 8 << 10
	// sendBuffer frames wait for a slow client; one more and it is dropped
	// (an order has about 13 events; a client that follows ten placed at
	// once has room).
	sendBuffer = 128
	// maxFollows is the most orders one connection follows by id.
	maxFollows = 200
	pingEvery  = 30 * time.Second
	writeWait  = 10 * time.Second
)

// HistoryFunc reads order id's history after seq after with the caller's
// token, oldest first, at most one page; a fault.NotFound means the caller
// may not see the order.
type HistoryFunc func(ctx context.Context, token string, id, after int64) ([]events.HistoryEntry, error)

// Live pushes every order's history to the WebSockets that follow it. Each
// gateway instance follows the history topic itself (bus.LiveSubscriber),
// so any replica serves any client; what the live feed misses (a gap in
// seq, a replay after a reconnect) is read from order-service.
type Live struct {
	verifier *auth.Verifier
	history  HistoryFunc
	limits   LiveLimits
	log      *slog.Logger

	mu       sync.Mutex
	conns    map[*liveConn]struct{}
	byOrder  map[int64]map[*liveConn]struct{}
	byUser   map[int64]map[*liveConn]struct{} // following "mine"
	perUser  map[int64]int
	perAddr  map[string]int
	open     int // admitted connections, upgraded or about to be
	stopping bool
	wg       sync.WaitGroup

	// Counts, for the metrics.
	accepted, refused, slow, frames atomic.Int64
}

// LiveStats are the WebSockets' figures.
type LiveStats struct {
	Open     int   // connections open now
	Accepted int64 // connections authenticated
	Refused  int64 // connections refused: unauthenticated, over a cap
	Slow     int64 // connections dropped for not reading fast enough
	Frames   int64 // events sent
}

// NewLive returns a Live that checks tokens with verifier and reads
// histories with history.
func NewLive(verifier *auth.Verifier, history HistoryFunc, limits LiveLimits, log *slog.Logger) *Live {
	return &Live{verifier: verifier, history: history, limits: limits, log: log,
		conns: map[*liveConn]struct{}{}, byOrder: map[int64]map[*liveConn]struct{}{}, byUser: map[int64]map[*liveConn]struct{}{},
		perUser: map[int64]int{}, perAddr: map[string]int{}}
}

// Stats returns the figures so far.
func (l *Live) Stats() LiveStats {
	l.mu.Lock()
	open := len(l.conns)
	l.mu.Unlock()
	return LiveStats{Open: open, Accepted: l.accepted.Load(), Refused: l.refused.Load(), Slow: l.slow.Load(), Frames: l.frames.Load()}
}

// Deliver is the handler of the gateway's live subscription to the
// history topic: it hands the entries to every connection following the
// order or its owner's orders. It never fails: a message it cannot read is
// logged and left, a connection that misses one fills the gap itself.
func (l *Live) Deliver(_ context.Context, m *bus.Message) error {
	var h events.OrderHistory
	if err := json.Unmarshal(m.Body, &h); err != nil || h.OrderID < 1 || len(h.Events) == 0 {
		l.log.Warn("unreadable order history message", "id", m.ID, "err", err)
		return nil
	}
	l.mu.Lock()
	var to []*liveConn
	for c := range l.byOrder[h.OrderID] {
		to = append(to, c)
	}
	for c := range l.byUser[h.UserID] {
		if _, dup := l.byOrder[h.OrderID][c]; !dup {
			to = append(to, c)
		}
	}
	l.mu.Unlock()
	for _, c := range to {
		c.offer(h.OrderID, h.UserID, h.Events)
	}
	return nil
}

// Shutdown closes every connection with 1001 (going away), so clients
// resume on another replica with their last seq, and refuses new ones. It
// waits for the connections to end, at most until ctx ends.
func (l *Live) Shutdown(ctx context.Context) {
	l.mu.Lock()
	l.stopping = true
	conns := make([]*liveConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	if len(conns) > 0 {
		l.log.Info("closing websockets", "connections", len(conns))
	}
	for _, c := range conns {
		c.close(websocket.StatusGoingAway, "the gateway is stopping; connect again with after", true)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// ServeHTTP upgrades GET /ws.
func (l *Live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	if len(r.Header.Values("Authorization")) > 1 {
		rest.Error(w, r, l.log, fault.New(fault.Invalid, "send one Authorization header"))
		return
	}
	// Before the upgrade, what can be refused with a status: a stopping
	// gateway, and the caps of the address and of all.
	if code, detail := l.admit(addr); code != 0 {
		l.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		rest.WriteProblem(w, r, code, "too_many_connections", detail)
		return
	}
	defer l.release(addr)
	// The server's deadlines are for requests; this connection lives for
	// hours, kept alive (and found dead) by pings.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: l.limits.Origins})
	if err != nil {
		l.log.InfoContext(r.Context(), "websocket refused", "err", err, "origin", r.Header.Get("Origin"))
		return // Accept answered
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	c := &liveConn{l: l, ws: ws, ctx: ctx, cancel: cancel, addr: addr,
		send: make(chan []byte, sendBuffer), closing: make(chan closeRequest, 1), follows: map[int64]*follow{}}
	p, token, err := c.authenticate(auth.BearerToken(r.Header.Get("Authorization")))
	if err != nil {
		c.refuse(err)
		return
	}
	if err := l.admitUser(p.UserID); err != nil {
		c.refuse(err)
		return
	}
	defer l.releaseUser(p.UserID)
	c.user, c.principal, c.token = p.UserID, p, token
	l.accepted.Add(1)
	if !l.add(c) {
		c.refuse(fault.New(fault.Unavailable, "this gateway is stopping; connect again"))
		return
	}
	defer l.remove(c)
	c.run()
}

// admit counts a new connection from addr against the caps, or returns
// the status and detail of a refusal.
func (l *Live) admit(addr string) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopping:
		return http.StatusServiceUnavailable, "this gateway is stopping; connect again"
	case l.open >= l.limits.Total:
		return http.StatusServiceUnavailable, fmt.Sprintf("this gateway has %d connections open, its most; try again shortly", l.limits.Total)
	case l.perAddr[addr] >= l.limits.PerAddress:
		return http.StatusTooManyRequests, fmt.Sprintf("%d connections are open from this address, the most allowed", l.limits.PerAddress)
	}
	l.open++
	l.perAddr[addr]++
	return 0, ""
}

func (l *Live) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perAddr[addr]--; l.perAddr[addr] <= 0 {
		delete(l.perAddr, addr)
	}
}

// admitUser counts a connection of user against the cap per user.
func (l *Live) admitUser(user int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perUser[user] >= l.limits.PerUser {
		return fault.New(fault.RateLimited, "%d connections are open for this account, the most allowed", l.limits.PerUser)
	}
	l.perUser[user]++
	return nil
}

func (l *Live) releaseUser(user int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perUser[user]--; l.perUser[user] <= 0 {
		delete(l.perUser, user)
	}
}

func (l *Live) add(c *liveConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *Live) remove(c *liveConn) {
	l.mu.Lock()
	delete(l.conns, c)
	c.mu.Lock()
	for id := range c.follows {
		l.unindex(l.byOrder, id, c)
	}
	c.mu.Unlock()
	l.unindex(l.byUser, c.user, c)
	l.mu.Unlock()
	l.wg.Done()
}

func (l *Live) index(m map[int64]map[*liveConn]struct{}, key int64, c *liveConn) {
	set, ok := m[key]
	if !ok {
		set = map[*liveConn]struct{}{}
		m[key] = set
	}
	set[c] = struct{}{}
}

func (l *Live) unindex(m map[int64]map[*liveConn]struct{}, key int64, c *liveConn) {
	if set, ok := m[key]; ok {
		delete(set, c)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// liveConn is one client's WebSocket.
type liveConn struct {
	l       *Live
	ws      *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	addr    string
	user    int64 // set before the connection is shared
	send    chan []byte
	closing chan closeRequest
	dropped atomic.Bool // too slow: nothing more is queued

	mu        sync.Mutex // guards what follows
	principal auth.Principal
	token     string
	follows   map[int64]*follow // by order id
	mine      bool
	mineFrom  map[int64]int64 // "mine": the seq to resume each order after
}

// closeRequest asks the writer to close the connection, after sending
// what is queued when flush is set.
type closeRequest struct {
	status websocket.StatusCode
	reason string
	flush  bool
}

// follow is what one connection has of one order: the last seq it was
// sent and, while the history is being read, the live entries that came
// meanwhile.
type follow struct {
	last    int64
	byID    bool // subscribed by its id (not only as one of "mine")
	filling bool
	pending []events.HistoryEntry
}

// clientMessage is every message a client sends.
type clientMessage struct {
	Type    string          `json:"type"`
	Token   string          `json:"token"`
	OrderID int64           `json:"orderId"`
	Orders  string          `json:"orders"`
	After   json.RawMessage `json:"after"`
}

// The frames the server sends.
type eventFrame struct {
	Type    string `json:"type"`
	OrderID int64  `json:"orderId"`
	events.HistoryEntry
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Detail  string `json:"detail,omitempty"`
	OrderID int64  `json:"orderId,omitempty"`
}

type subscribedFrame struct {
	Type    string `json:"type"`
	OrderID int64  `json:"orderId,omitempty"`
	Orders  string `json:"orders,omitempty"`
	Seq     int64  `json:"seq"`
}

// authenticate verifies the header's token or, without one, the first
// message, which must be an auth message with a valid token, within
// authWait.
func (c *liveConn) authenticate(header string) (auth.Principal, string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, authWait)
	defer cancel()
	token := header
	if token == "" {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return auth.Principal{}, "", fault.New(fault.Unauthorized, "no auth message within %s", authWait)
		}
		var m clientMessage
		if json.Unmarshal(data, &m) != nil || m.Type != "auth" || m.Token == "" {
			return auth.Principal{}, "", fault.New(fault.Unauthorized, `the first message must be {"type":"auth","token":"<access token>"}`)
		}
		token = m.Token
	}
	p, err := c.l.verifier.Verify(ctx, token)
	if err != nil {
		return auth.Principal{}, "", err
	}
	return p, token, nil
}

// refuse tells the client why and closes with 1008 (policy violation),
// or 1013 (try again later) when the refusal is for load.
func (c *liveConn) refuse(err error) {
	c.l.refused.Add(1)
	code, status := "unauthorized", websocket.StatusPolicyViolation
	switch {
	case fault.Is(err, fault.RateLimited):
		code, status = "too_many_connections", websocket.StatusTryAgainLater
	case fault.Is(err, fault.Unavailable):
		code, status = "unavailable", websocket.StatusTryAgainLater
	}
	c.l.log.Info("websocket refused", "reason", code, "err", err)
	b, _ := json.Marshal(errorFrame{Type: "error", Code: code, Detail: fault.Message(err)})
	wctx, cancel := context.WithTimeout(c.ctx, writeWait)
	defer cancel()
	if c.ws.Write(wctx, websocket.MessageText, b) == nil {
		_ = c.ws.Close(status, code)
	}
}

// run serves the connection until it closes: one goroutine writes (frames
// and pings), this one reads the client's messages.
func (c *liveConn) run() {
	go c.writeLoop()
	defer c.cancel()
	expiry := time.AfterFunc(time.Until(c.principal.Expires), func() {
		c.sendJSON(errorFrame{Type: "error", Code: "token_expired", Detail: "the access token expired; connect again with a new one and after"})
		c.close(websocket.StatusPolicyViolation, "token expired", true)
	})
	defer expiry.Stop()
	for {
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return // closed by either side
		}
		var m clientMessage
		if err := json.Unmarshal(data, &m); err != nil {
			c.sendJSON(errorFrame{Type: "error", Code: "bad_request", Detail: "messages are JSON objects with a type"})
			continue
		}
		switch m.Type {
		case "auth":
			c.reauth(m.Token, expiry)
		case "subscribe":
			c.subscribe(m)
		case "unsubscribe":
			c.unsubscribe(m)
		default:
			c.sendJSON(errorFrame{Type: "error", Code: "bad_request", Detail: fmt.Sprintf("unknown message type %q: auth, subscribe or unsubscribe", m.Type)})
		}
	}
}

// reauth takes a newer token of the same user, so the connection outlives
// the first token's expiry.
func (c *liveConn) reauth(token string, expiry *time.Timer) {
	p, err := c.l.verifier.Verify(c.ctx, token)
	if err != nil || p.UserID != c.user {
		c.sendJSON(errorFrame{Type: "error", Code: "unauthorized", Detail: "the token is not valid for this connection's user"})
		return
	}
	c.mu.Lock()
	c.principal, c.token = p, token
	c.mu.Unlock()
	expiry.Reset(time.Until(p.Expires))
}

func (c *liveConn) subscribe(m clientMessage) {
	switch {
	case m.Orders == "mine":
		from := map[string]int64{}
		if len(m.After) > 0 && string(m.After) != "0" && string(m.After) != "null" {
			if err := json.Unmarshal(m.After, &from); err != nil {
				c.sendJSON(errorFrame{Type: "error", Code: "bad_request", Detail: `for "mine", after is an object of order id to the last seq seen, e.g. {"12":3}`})
				return
			}
		}
		resume := map[int64]int64{}
		for k, v := range from {
			id, err := strconv.ParseInt(k, 10, 64)
			if err != nil || id < 1 || v < 0 {
				c.sendJSON(errorFrame{Type: "error", Code: "bad_request", Detail: fmt.Sprintf("after: %q: %d is not an order id and a seq", k, v)})
				return
			}
			resume[id] = v
		}
		c.mu.Lock()
		c.mine, c.mineFrom = true, resume
		c.mu.Unlock()
		c.l.mu.Lock()
		c.l.index(c.l.byUser, c.user, c)
		c.l.mu.Unlock()
		// The orders named in after are replayed from where the client is;
		// the others come whole when they next change.
		for id, after := range resume {
			c.follow(id, after, false)
		}
		c.sendJSON(subscribedFrame{Type: "subscribed", Orders: "mine"})
	case m.OrderID > 0:
		var after int64
		if len(m.After) > 0 {
			if err := json.Unmarshal(m.After, &after); err != nil || after < 0 {
				c.sendJSON(errorFrame{Type: "error", Code: "bad_request", OrderID: m.OrderID, Detail: "after is the last seq seen: 0 or more"})
				return
			}
		}
		c.follow(m.OrderID, after, true)
	default:
		c.sendJSON(errorFrame{Type: "error", Code: "bad_request", Detail: `subscribe to {"orderId":<id>,"after":<seq>} or {"orders":"mine"}`})
	}
}

func (c *liveConn) unsubscribe(m clientMessage) {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case m.Orders == "mine":
		c.mine = false
		c.l.unindex(c.l.byUser, c.user, c)
		for id, f := range c.follows {
			if !f.byID {
				delete(c.follows, id)
				c.l.unindex(c.l.byOrder, id, c)
			}
		}
	case m.OrderID > 0:
		if f, ok := c.follows[m.OrderID]; ok {
			f.byID = false
			if !c.mine {
				delete(c.follows, m.OrderID)
				c.l.unindex(c.l.byOrder, m.OrderID, c)
			}
		}
	}
}

// follow starts following order id after seq after: its live entries are
// held while its history after after is read, then sent in seq order,
// each once.
func (c *liveConn) follow(id, after int64, byID bool) {
	c.mu.Lock()
	if f, ok := c.follows[id]; ok {
		f.byID = f.byID || byID
		c.mu.Unlock()
		if byID {
			c.sendJSON(subscribedFrame{Type: "subscribed", OrderID: id, Seq: f.last})
		}
		return
	}
	if len(c.follows) >= maxFollows {
		c.mu.Unlock()
		c.sendJSON(errorFrame{Type: "error", Code: "too_many_subscriptions", OrderID: id, Detail: fmt.Sprintf("a connection follows at most %d orders", maxFollows)})
		return
	}
	f := &follow{last: after, byID: byID, filling: true}
	c.follows[id] = f
	c.mu.Unlock()
	c.l.mu.Lock()
	c.l.index(c.l.byOrder, id, c)
	c.l.mu.Unlock()
	go c.fill(id, f, byID)
}

// offer takes live entries of order id (of user): the next ones in seq
// are sent, earlier ones dropped as seen, and a gap is filled from the
// history first.
func (c *liveConn) offer(id, user int64, evs []events.HistoryEntry) {
	c.mu.Lock()
	f, ok := c.follows[id]
	if !ok {
		if !c.mine || user != c.user || len(c.follows) >= maxFollows {
			c.mu.Unlock()
			return
		}
		// One of "mine" the client has not named: it comes whole.
		f = &follow{last: c.mineFrom[id]}
		c.follows[id] = f
		c.mu.Unlock()
		c.l.mu.Lock()
		c.l.index(c.l.byOrder, id, c)
		c.l.mu.Unlock()
		c.mu.Lock()
	}
	if f.filling {
		f.pending = append(f.pending, evs...)
		c.mu.Unlock()
		return
	}
	for i, ev := range evs {
		switch {
		case ev.Seq <= f.last:
			continue
		case ev.Seq == f.last+1:
			c.sendEvent(id, ev)
			f.last = ev.Seq
		default:
			f.filling = true
			f.pending = append(f.pending, evs[i:]...)
			c.mu.Unlock()
			go c.fill(id, f, false)
			return
		}
	}
	c.mu.Unlock()
}

// fill reads order id's history after what f was sent and sends it, with
// the live entries that came meanwhile, in seq order; it ends when
// nothing is missing. A read that finds the order not the caller's ends
// the follow with a not_found error; a history that cannot be read ends
// the connection (1013), and the client comes back with after.
func (c *liveConn) fill(id int64, f *follow, announce bool) {
	wait := 100 * time.Millisecond
	for failures, reads := 0, 0; ; {
		c.mu.Lock()
		after, token := f.last, c.token
		c.mu.Unlock()
		page, err := c.l.history(c.ctx, token, id, after)
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			if fault.Is(err, fault.NotFound) || fault.Is(err, fault.Forbidden) {
				c.drop(id)
				c.sendJSON(errorFrame{Type: "error", Code: "not_found", OrderID: id, Detail: fault.Message(err)})
				return
			}
			if failures++; failures >= 5 {
				c.l.log.Warn("order history unavailable; closing the websocket", "order_id", id, "err", err)
				c.sendJSON(errorFrame{Type: "error", Code: "unavailable", OrderID: id, Detail: "the order's history cannot be read now; connect again with after"})
				c.close(websocket.StatusTryAgainLater, "history unavailable", true)
				return
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait *= 2
			continue
		}
		c.mu.Lock()
		if c.follows[id] != f {
			c.mu.Unlock()
			return // unsubscribed meanwhile
		}
		all := append(page, f.pending...)
		slices.SortStableFunc(all, func(a, b events.HistoryEntry) int { return cmp.Compare(a.Seq, b.Seq) })
		f.pending = nil
		for _, ev := range all {
			switch {
			case ev.Seq == f.last+1:
				c.sendEvent(id, ev)
				f.last = ev.Seq
			case ev.Seq > f.last+1:
				f.pending = append(f.pending, ev)
			}
		}
		// Read again after a full page, or when live entries came past a
		// gap the read did not cover (they committed after it).
		if reads++; len(page) < historyPage && len(f.pending) == 0 || reads > 100 {
			f.filling, f.pending = false, nil
			last := f.last
			c.mu.Unlock()
			if announce {
				c.sendJSON(subscribedFrame{Type: "subscribed", OrderID: id, Seq: last})
			}
			return
		}
		c.mu.Unlock()
	}
}

// historyPage is the most entries one history read returns.
const historyPage = 500

// drop stops following order id.
func (c *liveConn) drop(id int64) {
	c.l.mu.Lock()
	c.l.unindex(c.l.byOrder, id, c)
	c.l.mu.Unlock()
	c.mu.Lock()
	delete(c.follows, id)
	c.mu.Unlock()
}

// sendEvent queues ev's frame; the caller holds c.mu, so the frames of one
// order are queued in seq order.
func (c *liveConn) sendEvent(id int64, ev events.HistoryEntry) {
	b, err := json.Marshal(eventFrame{Type: "event", OrderID: id, HistoryEntry: ev})
	if err != nil {
		return
	}
	if c.queue(b) {
		c.l.frames.Add(1)
	}
}

func (c *liveConn) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err == nil {
		c.queue(b)
	}
}

// queue hands b to the writer, or drops a client that is sendBuffer frames
// behind: it never holds up the feed that every other client shares.
func (c *liveConn) queue(b []byte) bool {
	select {
	case c.send <- b:
		return true
	case <-c.ctx.Done():
		return false
	default:
		if c.dropped.CompareAndSwap(false, true) {
			c.l.slow.Add(1)
			c.l.log.Info("websocket too slow; dropping it", "user_id", c.user, "address", c.addr)
			c.close(websocket.StatusPolicyViolation, "too slow", false)
		}
		return false
	}
}

// close has the writer close the connection with status, after the frames
// already queued when flush is set (the error that says why, above all).
func (c *liveConn) close(status websocket.StatusCode, reason string, flush bool) {
	select {
	case c.closing <- closeRequest{status: status, reason: reason, flush: flush}:
	default: // closing already
	}
}

// writeLoop writes the queued frames and the pings, and closes the
// connection when asked.
func (c *liveConn) writeLoop() {
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	write := func(b []byte) error {
		ctx, cancel := context.WithTimeout(c.ctx, writeWait)
		defer cancel()
		return c.ws.Write(ctx, websocket.MessageText, b)
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.send:
			if write(b) != nil {
				c.cancel()
				return
			}
		case req := <-c.closing:
			for flushing := req.flush; flushing; {
				select {
				case b := <-c.send:
					flushing = write(b) == nil
				default:
					flushing = false
				}
			}
			_ = c.ws.Close(req.status, req.reason) // the reader sees the close and ends the connection
			c.cancel()
			return
		case <-ping.C:
			ctx, cancel := context.WithTimeout(c.ctx, writeWait)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil {
				c.l.log.Info("websocket did not answer a ping; closing it", "user_id", c.user, "err", err)
				c.cancel()
				return
			}
		}
	}
}

// OrderHistory reads histories from order-service with client (one that
// finds order-service through discovery), as the caller: order-service
// applies the caller's rights.
func OrderHistory(client *http.Client) HistoryFunc {
	return func(ctx context.Context, token string, id, after int64) ([]events.HistoryEntry, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		url := fmt.Sprintf("http://%s/api/orders/%d/events?after=%d&limit=%d", services.Order, id, after, historyPage)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fault.Wrap(fault.Unavailable, err, "order-service cannot be reached")
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, fault.New(fault.NotFound, "no order %d", id)
		case resp.StatusCode == http.StatusForbidden:
			return nil, fault.New(fault.Forbidden, "order %d is not yours", id)
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, fault.New(fault.Unauthorized, "the access token is not accepted")
		case resp.StatusCode != http.StatusOK:
			return nil, fault.New(fault.Unavailable, "order-service answered %s", resp.Status)
		}
		var page struct {
			Events []events.HistoryEntry `json:"events"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&page); err != nil {
			return nil, fault.Wrap(fault.Unavailable, err, "order-service's answer is unreadable")
		}
		return page.Events, nil
	}
}
