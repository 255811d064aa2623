// Package httpapi serves the registry over HTTP/JSON: the API that
// discovery.Client speaks.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/registry"
	"github.com/junction-go/junction/rest"
)

// MaxWatch is the longest a watch request is held open.
const MaxWatch = 30 * time.Second

// MayRegister reports whether r's caller may register, renew or remove
// instances of service.
type MayRegister func(r *http.Request, service string) bool

// Handler returns the registry's HTTP API. With may set, an instance is
// registered, replaced or removed only by a caller may allows for its
// service (and for the service of the instance it replaces), so an
// address looked up belongs to the service named.
func Handler(reg *registry.Registry, log *slog.Logger, may MayRegister) http.Handler {
	h := &handler{reg: reg, log: log, may: may}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/instances/{id}", h.register)
	mux.HandleFunc("DELETE /v1/instances/{id}", h.deregister)
	mux.HandleFunc("GET /v1/services", h.catalog)
	mux.HandleFunc("GET /v1/services/{name}", h.lookup)
	mux.HandleFunc("GET /v1/services/{name}/stream", h.stream)
	mux.HandleFunc("GET /v1/prometheus", h.prometheus)
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.Recover(log))
}

type handler struct {
	reg *registry.Registry
	log *slog.Logger
	may MayRegister
}

// allowed checks that r's caller may act for service, answering 403 when
// not.
func (h *handler) allowed(w http.ResponseWriter, r *http.Request, service string) bool {
	if h.may == nil || h.may(r, service) {
		return true
	}
	rest.WriteProblem(w, r, http.StatusForbidden, "forbidden", "this caller may not register or remove instances of "+service)
	return false
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	var reg discovery.Registration
	if err := rest.Decode(w, r, 16<<10, &reg); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	if reg.ID != r.PathValue("id") {
		rest.Error(w, r, h.log, fault.New(fault.Invalid, "the body's id must match the path"))
		return
	}
	if !h.allowed(w, r, reg.Service) {
		return
	}
	if old, ok := h.reg.ServiceOf(reg.ID); ok && old != reg.Service && !h.allowed(w, r, old) {
		return
	}
	if err := h.reg.Register(reg); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) deregister(w http.ResponseWriter, r *http.Request) {
	if svc, ok := h.reg.ServiceOf(r.PathValue("id")); ok && !h.allowed(w, r, svc) {
		return
	}
	h.reg.Deregister(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) catalog(w http.ResponseWriter, _ *http.Request) {
	rest.JSON(w, http.StatusOK, h.reg.Catalog())
}

// lookup answers at once, or with ?wait=REV&epoch=E when the service's view
// differs from that revision (at most MaxWatch later).
func (h *handler) lookup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	if !q.Has("wait") {
		rest.JSON(w, http.StatusOK, h.reg.Lookup(name))
		return
	}
	rev, err := strconv.ParseUint(q.Get("wait"), 10, 64)
	if err != nil {
		rest.Error(w, r, h.log, fault.New(fault.Invalid, "wait must be a revision number"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), MaxWatch)
	defer cancel()
	rest.JSON(w, http.StatusOK, h.reg.Watch(ctx, name, q.Get("epoch"), rev))
}

// streamBeat is how often a quiet stream sends a comment, so proxies and
// clients see the connection alive.
const streamBeat = 25 * time.Second

// stream sends service's view now and after every change as Server-Sent
// Events (event "view", data the JSON of discovery.View) until the client
// goes away: the watch as a stream, for tools and dashboards (curl -N).
func (h *handler) stream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// The server's write timeout is meant for one answer; a stream moves
	// its deadline on with every event.
	send := func(write func() error) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamBeat + 10*time.Second))
		err := write()
		if err == nil {
			err = rc.Flush()
		}
		return err == nil // false: the client went away
	}
	last := h.reg.Lookup(name)
	ok := send(func() error { return writeEvent(w, last) })
	for ok && r.Context().Err() == nil {
		ctx, cancel := context.WithTimeout(r.Context(), streamBeat)
		v := h.reg.Watch(ctx, name, last.Epoch, last.Revision)
		cancel()
		if v.Epoch == last.Epoch && v.Revision == last.Revision {
			ok = send(func() error { _, err := io.WriteString(w, ": still here\n\n"); return err })
			continue
		}
		last = v
		ok = send(func() error { return writeEvent(w, v) })
	}
}

func writeEvent(w io.Writer, v discovery.View) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: view\nid: %s-%d\ndata: %s\n\n", v.Epoch, v.Revision, data)
	return err
}

// promTargets is one group of Prometheus' HTTP service discovery.
type promTargets struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// prometheus answers Prometheus' HTTP service-discovery format: one group
// per live instance, its HTTP endpoint the target, its service, id and
// version as __meta_junction_* labels for relabelling.
func (h *handler) prometheus(w http.ResponseWriter, _ *http.Request) {
	groups := []promTargets{}
	for _, v := range h.reg.Catalog().Services {
		for _, inst := range v.Instances {
			addr := inst.Endpoints[discovery.EndpointHTTP]
			if addr == "" {
				continue
			}
			labels := map[string]string{
				"__meta_junction_service":  inst.Service,
				"__meta_junction_instance": inst.ID,
			}
			if ver := inst.Metadata["version"]; ver != "" {
				labels["__meta_junction_version"] = ver
			}
			groups = append(groups, promTargets{Targets: []string{addr}, Labels: labels})
		}
	}
	rest.JSON(w, http.StatusOK, groups)
}
