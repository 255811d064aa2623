package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/rest"
)

func roomHeader(free, placing int, ends float64) http.Header {
	h := http.Header{}
	h.Set(services.RoomHeader, services.Room{Free: free, Placing: placing, Ends: ends}.String())
	return h
}

// TestOrderRoomReckons: the room an answer reported, less the orders on
// their way to it then and those sent on since, plus those ended since at
// the pace it gave (endsLag behind it); instances share the orders sent
// on; an instance not heard from for roomFresh is left out, and with none
// heard from every order goes on.
func TestOrderRoomReckons(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	o := newOrderRoom()
	if !o.has(t0) {
		t.Fatal("no room with nothing heard; want every order to go on")
	}
	o.heard("a", roomHeader(2, 0, 10), false, t0)
	for i := range 2 {
		if !o.has(t0) {
			t.Fatalf("no room for order %d of the 2 reported", i+1)
		}
		o.sentOn()
	}
	if o.has(t0) {
		t.Fatal("room after the 2 reported were sent on")
	}
	// At 10 ended a second, one has ended 100 ms later, and the
	// reckoning is 2 behind: room 300 ms later.
	if o.has(at(290)) {
		t.Error("room 290 ms later, at 10 ended a second")
	}
	if !o.has(at(300)) {
		t.Error("no room 300 ms later, at 10 ended a second")
	}
	o.sentOn()
	if o.has(at(300)) {
		t.Error("room after the one ended was sent on")
	}
	// Two instances, one with one free: the orders sent on since are
	// shared between them.
	two := newOrderRoom()
	two.heard("a", roomHeader(0, 0, 0), false, t0)
	two.heard("b", roomHeader(1, 0, 0), false, t0)
	if !two.has(t0) {
		t.Error("no room with b's one free")
	}
	two.sentOn()
	if two.has(t0) {
		t.Error("room after b's one was sent on")
	}
	// Nothing heard for longer than roomFresh: every order goes on.
	if !o.has(at(300).Add(roomFresh)) {
		t.Error("no room with nothing heard for longer than roomFresh")
	}
	// An answer without the header, or with a bad one, changes nothing.
	o.heard("a", roomHeader(0, 0, 0), false, t0)
	h := http.Header{}
	o.heard("a", h, false, t0)
	h.Set(services.RoomHeader, "lots")
	o.heard("a", h, false, t0)
	if o.has(t0) {
		t.Error("room after answers without a report")
	}
}

// TestOrderRoomInTransit: orders sent on and not answered when an answer
// comes, other than the one answered and those it says are being placed,
// are on their way and take room it did not count.
func TestOrderRoomInTransit(t *testing.T) {
	t0 := time.Now()
	o := newOrderRoom()
	for range 5 {
		o.sentOn()
	}
	// The answer to one of the five: 3 free, 1 being placed; so 3 are on
	// their way.
	o.heard("a", roomHeader(3, 1, 0), true, t0)
	o.answered()
	if o.has(t0) {
		t.Fatal("room with 3 free and 3 on their way")
	}
	// The answer to another: 3 free; of the 4 pending, one is the
	// answered, one being placed, so 2 on their way.
	o.heard("a", roomHeader(3, 1, 0), true, t0)
	o.answered()
	if !o.has(t0) {
		t.Fatal("no room with 3 free and 2 on their way")
	}
	o.sentOn()
	if o.has(t0) {
		t.Fatal("room with 3 free, 2 on their way and 1 sent on since")
	}
}

// TestOrderRoomTells: the refusals made here go on the next request to
// order-service, once; a count a client put on its request never does.
func TestOrderRoomTells(t *testing.T) {
	o := newOrderRoom()
	h := http.Header{}
	h.Set(services.RefusedHeader, "1000")
	o.tell(h)
	if v := h.Get(services.RefusedHeader); v != "" {
		t.Errorf("a client's count went on: %q", v)
	}
	for range 3 {
		o.refusedHere()
	}
	o.tell(h)
	if v := h.Get(services.RefusedHeader); v != "3" {
		t.Errorf("told %q, want 3", v)
	}
	h = http.Header{}
	o.tell(h)
	if v := h.Get(services.RefusedHeader); v != "" {
		t.Errorf("told %q again", v)
	}
}

// TestGatewayRefusesNewOrdersWithoutRoom, through the gateway to an
// order-service that reports its room: a new order with no room left is
// refused at the gateway (503 overloaded, Retry-After) without reaching
// it; the next request to it says how many were refused; room reported
// again lets orders through; no client sees the room or can tell
// order-service of refusals.
func TestGatewayRefusesNewOrdersWithoutRoom(t *testing.T) {
	var mu sync.Mutex
	room := 1
	var arrivals []string // method and what the gateway said it refused
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, r.Method+" "+r.Header.Get(services.RefusedHeader))
		if r.Method == http.MethodPost {
			room--
		}
		w.Header().Set(services.RoomHeader, services.Room{Free: max(room, 0)}.String())
		w.WriteHeader(http.StatusCreated)
	}))
	defer backend.Close()
	res := discovery.NewResolver(discovery.Static{{ID: "order-1", Service: services.Order, Endpoints: map[string]string{discovery.EndpointHTTP: backend.Listener.Addr().String()}}})
	defer res.Close()
	verifier, signer := testKeys(t)
	token, err := signer.Sign(auth.Principal{UserID: 7, Username: "ann", Role: auth.RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(New(res, verifier, DefaultLimits, nil, quiet).Handler())
	defer front.Close()

	send := func(method, path string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, front.URL+path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v := resp.Header.Get(services.RoomHeader); v != "" {
			t.Errorf("%s %s: the client saw the room %q", method, path, v)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			var p rest.Problem
			_ = json.NewDecoder(resp.Body).Decode(&p)
			if p.Code != "overloaded" || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s %s: refused with %q, Retry-After %q; want overloaded with Retry-After", method, path, p.Code, resp.Header.Get("Retry-After"))
			}
		}
		return resp
	}
	want := []int{http.StatusCreated, http.StatusServiceUnavailable, http.StatusServiceUnavailable}
	for i, code := range want {
		if got := send("POST", "/api/orders").StatusCode; got != code {
			t.Errorf("order %d: %d, want %d", i+1, got, code)
		}
	}
	mu.Lock()
	room = 2 // two orders ended
	mu.Unlock()
	if got := send("GET", "/api/orders/1", services.RefusedHeader, "500").StatusCode; got != http.StatusCreated {
		t.Errorf("a read: %d", got)
	}
	if got := send("POST", "/api/orders").StatusCode; got != http.StatusCreated {
		t.Errorf("an order once room was reported: %d, want 201", got)
	}
	if got := send("GET", "/api/orders/1", services.RefusedHeader, "500").StatusCode; got != http.StatusCreated {
		t.Errorf("a read: %d", got)
	}
	mu.Lock()
	defer mu.Unlock()
	// The two refused are told once, on the read after them; the
	// client's 500 never.
	wantArrivals := []string{"POST ", "GET 2", "POST ", "GET "}
	if strings.Join(arrivals, "|") != strings.Join(wantArrivals, "|") {
		t.Errorf("order-service saw %q, want %q", arrivals, wantArrivals)
	}
}
