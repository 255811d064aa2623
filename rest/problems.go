package rest

import (
	"fmt"
	"html"
	"net/http"
	"slices"
	"strings"

	"github.com/junction-go/junction/telemetry"
)

// ProblemsPath is where every Junction HTTP server describes its error
// codes: a problem document's type is ProblemsPath + its code, a relative
// URI that resolves against the address the caller asked, so it names a
// page of the server that answered (through the gateway, the gateway's).
const ProblemsPath = "/problems/"

// problemType describes one error code.
type problemType struct {
	Status int
	About  string
}

// problemTypes are every code a Junction server answers with.
var problemTypes = map[string]problemType{
	"invalid":            {http.StatusBadRequest, "The request is malformed or a value in it is out of range: a field missing or of the wrong type, a body that is not JSON, an unknown parameter value. The detail names what is wrong. Sending it again unchanged will fail again."},
	"unauthorized":       {http.StatusUnauthorized, "The request needs a valid bearer token (Authorization: Bearer <token>, from POST /api/auth/login) and has none, or one that is expired, not yet valid, for another audience, or not signed by a current key. Log in again."},
	"forbidden":          {http.StatusForbidden, "The token is valid but its holder may not do this: a customer asking for an administrator's route, or for another customer's data."},
	"not_found":          {http.StatusNotFound, "There is no such resource, or none the caller may see (another customer's order is answered as missing), or no route for the path."},
	"method_not_allowed": {http.StatusMethodNotAllowed, "The path exists but not for this method; the Allow header lists the methods it takes."},
	"conflict":           {http.StatusConflict, "The request cannot be done in the resource's current state: not enough stock, an order that has shipped and cannot be cancelled, an idempotency key reused with a different body."},
	"too_large":          {http.StatusRequestEntityTooLarge, "The request body is larger than the route accepts (64 KiB unless the route says otherwise)."},
	"rate_limited":       {http.StatusTooManyRequests, "The caller sent more requests than its rate allows (per client address, and per signed-in user). Wait as long as Retry-After says, then try again."},
	"overloaded":         {http.StatusServiceUnavailable, "The gateway or a service refused this request rather than queue it: the gateway had as many requests in flight as it takes; or, for a new order, order-service has been refusing orders (as many are in progress as it can finish in time) and the gateway refuses that share at once; or a service had as much work queued as it takes, and refuses new work before work for orders already taken. Nothing was done; try again after Retry-After."},
	"unavailable":        {http.StatusServiceUnavailable, "A service or one of its dependencies cannot answer right now (no healthy instance, a breaker open, a database or broker unreachable). Nothing was done; try again after Retry-After."},
	"timeout":            {http.StatusGatewayTimeout, "A dependency did not answer in time. The request may or may not have taken effect: retry it with the same Idempotency-Key to find out without doing it twice."},
	"upstream_timeout":   {http.StatusGatewayTimeout, "The service behind the gateway did not answer within the request's time. The request may or may not have taken effect: retry it with the same Idempotency-Key."},
	"deadline_exceeded":  {http.StatusGatewayTimeout, "The request arrived after its deadline (X-Request-Deadline) had passed, so it was not started."},
	"bad_gateway":        {http.StatusBadGateway, "The service behind the gateway gave an answer the gateway could not use."},
	"internal":           {http.StatusInternalServerError, "Something failed inside the service. The detail is logged there under the request id (requestId, X-Request-Id), never sent; quote the id in a report."},
}

// TypeURI returns the problem type of code: ProblemsPath + code.
func TypeURI(code string) string { return ProblemsPath + code }

// ProblemPage answers GET ProblemsPath{code} with a page describing code,
// or 404 for a code that does not exist.
func ProblemPage(w http.ResponseWriter, r *http.Request) {
	code := strings.TrimPrefix(r.URL.Path, ProblemsPath)
	if code == "" {
		problemIndex(w)
		return
	}
	p, ok := problemTypes[code]
	if !ok {
		WriteProblem(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no error code %q", code))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=86400")
	fmt.Fprintf(w, "<!doctype html>\n<title>%s: %d %s</title>\n<h1><code>%s</code>: %d %s</h1>\n<p>%s</p>\n<p><a href=\"%s\">Every error code</a></p>\n",
		code, p.Status, http.StatusText(p.Status), code, p.Status, http.StatusText(p.Status), html.EscapeString(p.About), ProblemsPath)
}

func problemIndex(w http.ResponseWriter) {
	codes := make([]string, 0, len(problemTypes))
	for c := range problemTypes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<!doctype html>\n<title>Error codes</title>\n<h1>Error codes</h1>\n<p>Every error is an RFC 9457 problem document (application/problem+json) with one of these codes.</p>\n<dl>\n")
	for _, c := range codes {
		p := problemTypes[c]
		fmt.Fprintf(&b, "<dt><a href=\"%s\"><code>%s</code></a> (%d)</dt><dd>%s</dd>\n", TypeURI(c), c, p.Status, html.EscapeString(p.About))
	}
	b.WriteString("</dl>\n")
	_, _ = w.Write([]byte(b.String()))
}

// Routes serves mux, answering what it has no route for with a problem
// document: 405 with Allow where the path is routed for other methods,
// 404 otherwise. It adds the problem pages (GET ProblemsPath…) to mux.
// mux must not have a catch-all "/" route of its own.
func Routes(mux *http.ServeMux) http.Handler {
	mux.HandleFunc("GET "+ProblemsPath, ProblemPage)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			telemetry.SetRoute(r.Context(), pattern)
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own 404 or 405: learn which, then answer it as a
		// problem document.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			WriteProblem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			return
		}
		NotFound(w, r)
	})
}

// headerRecorder keeps a handler's status and headers and drops its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}
func (h *headerRecorder) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(p), nil
}
