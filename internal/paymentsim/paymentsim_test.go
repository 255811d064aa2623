package paymentsim_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/junction-go/junction/internal/paymentsim"
)

type sim struct {
	t   *testing.T
	p   *paymentsim.Provider
	srv *httptest.Server
}

func start(t *testing.T) *sim {
	p := paymentsim.New(slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return &sim{t: t, p: p, srv: srv}
}

func (s *sim) post(path string, body any) (int, paymentsim.Payment) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.srv.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p paymentsim.Payment
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p
}

func auth(key, card string) map[string]any {
	return map[string]any{"key": key, "orderRef": "42", "amount": 1200, "currency": "EUR", "card": card}
}

func TestARepeatedKeyHasOneEffectAndTheSameAnswer(t *testing.T) {
	s := start(t)
	code, first := s.post("/v1/authorizations", auth("k1", "4242424242424242"))
	if code != http.StatusCreated || first.Status != "authorized" {
		t.Fatalf("authorize = %d %+v", code, first)
	}
	_, again := s.post("/v1/authorizations", auth("k1", "4242424242424242"))
	if again != first {
		t.Errorf("repeat = %+v, want %+v", again, first)
	}
	for range 2 {
		if code, p := s.post("/v1/payments/"+first.ID+"/capture", map[string]string{"key": "k2"}); code != http.StatusOK || p.Status != "captured" {
			t.Errorf("capture = %d %+v", code, p)
		}
	}
	if code, _ := s.post("/v1/payments/"+first.ID+"/void", map[string]string{"key": "k3"}); code != http.StatusConflict {
		t.Errorf("void of a captured payment = %d, want 409", code)
	}
	code, p := s.post("/v1/payments/"+first.ID+"/refund", map[string]string{"key": "k4"})
	if code != http.StatusOK || p.Status != "refunded" {
		t.Errorf("refund = %d %+v", code, p)
	}
	st := statsOf(t, s)
	if c := st.Orders["42"]; c != (paymentsim.Counts{Authorized: 1, Captured: 1, Refunded: 1}) {
		t.Errorf("counts = %+v, want one authorization, capture and refund", c)
	}
	for k, n := range st.Effects {
		if n != 1 {
			t.Errorf("key %s: %d effects", k, n)
		}
	}
}

func statsOf(t *testing.T, s *sim) paymentsim.Stats {
	t.Helper()
	resp, err := http.Get(s.srv.URL + "/v1/admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st paymentsim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDeclinesAreAnswersChosenByKey(t *testing.T) {
	s := start(t)
	if _, p := s.post("/v1/authorizations", auth("d1", paymentsim.DeclinedCard)); p.Status != "declined" || p.Reason != "card declined" {
		t.Errorf("the declined card = %+v", p)
	}
	if err := s.p.SetFaults(paymentsim.Faults{DeclineRate: 0.5, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	declined := 0
	for i := range 200 {
		key := "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		_, p1 := s.post("/v1/authorizations", auth(key, "4242424242424242"))
		_, p2 := s.post("/v1/authorizations", auth(key, "4242424242424242"))
		if p1.Status != p2.Status {
			t.Fatalf("key %s: %s then %s, want the same answer", key, p1.Status, p2.Status)
		}
		if p1.Status == "declined" {
			declined++
		}
	}
	if declined < 60 || declined > 140 {
		t.Errorf("declined %d of 200 at rate 0.5", declined)
	}
}

func TestOutageAndBadSettings(t *testing.T) {
	s := start(t)
	if err := s.p.SetFaults(paymentsim.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.post("/v1/authorizations", auth("o1", "4242424242424242")); code != http.StatusServiceUnavailable {
		t.Errorf("during an outage = %d, want 503", code)
	}
	if st := statsOf(t, s); len(st.Effects) != 0 {
		t.Errorf("an outage had effects: %v", st.Effects)
	}
	req, _ := http.NewRequest("PUT", s.srv.URL+"/v1/admin/faults", bytes.NewReader([]byte(`{"errorRate":2}`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("an error rate of 2 = %d, want a client error", resp.StatusCode)
	}
}
