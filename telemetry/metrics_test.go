package telemetry_test

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/junction-go/junction/telemetry"
)

// TestRefusalsTimedApart: every request is counted and timed; a refusal
// for load (429 or 503 with Retry-After) is timed again on its own, and
// nothing else is (a 503 without Retry-After is a failure, not a
// refusal).
func TestRefusalsTimedApart(t *testing.T) {
	m := telemetry.NewMetrics()
	mux := http.NewServeMux()
	answer := func(status int, retryAfter bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if retryAfter {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(status)
		}
	}
	mux.Handle("POST /refused", answer(http.StatusServiceUnavailable, true))
	mux.Handle("GET /limited", answer(http.StatusTooManyRequests, true))
	mux.Handle("GET /down", answer(http.StatusServiceUnavailable, false))
	mux.Handle("GET /ok", answer(http.StatusOK, true))
	h := m.HTTPMetrics(mux)
	for _, req := range []struct{ method, path string }{
		{http.MethodPost, "/refused"}, {http.MethodPost, "/refused"}, {http.MethodGet, "/limited"},
		{http.MethodGet, "/down"}, {http.MethodGet, "/ok"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}

	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	timed := map[string]map[string]uint64{} // metric -> "METHOD route" -> observations
	for _, f := range families {
		for _, s := range f.GetMetric() {
			if s.GetHistogram() == nil {
				continue
			}
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if timed[f.GetName()] == nil {
				timed[f.GetName()] = map[string]uint64{}
			}
			timed[f.GetName()][labels["method"]+" "+labels["route"]] = s.GetHistogram().GetSampleCount()
		}
	}
	all := timed["http_server_request_duration_seconds"]
	if want := map[string]uint64{"POST /refused": 2, "GET /limited": 1, "GET /down": 1, "GET /ok": 1}; !maps.Equal(all, want) {
		t.Errorf("http_server_request_duration_seconds = %v, want %v", all, want)
	}
	refusals := timed["http_server_refusal_duration_seconds"]
	if want := map[string]uint64{"POST /refused": 2, "GET /limited": 1}; !maps.Equal(refusals, want) {
		t.Errorf("http_server_refusal_duration_seconds = %v, want %v", refusals, want)
	}
}
