// Package httpapi serves the registry over HTTP/JSON: the API that
// discovery.Client speaks.
package httpapi

import (
	"context"
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

// Handler returns the registry's HTTP API.
func Handler(reg *registry.Registry, log *slog.Logger) http.Handler {
	h := &handler{reg: reg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/instances/{id}", h.register)
	mux.HandleFunc("DELETE /v1/instances/{id}", h.deregister)
	mux.HandleFunc("GET /v1/services", h.catalog)
	mux.HandleFunc("GET /v1/services/{name}", h.lookup)
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("/", rest.NotFound)
	return rest.Chain(mux, rest.RequestID, rest.Recover(log))
}

type handler struct {
	reg *registry.Registry
	log *slog.Logger
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
	if err := h.reg.Register(reg); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) deregister(w http.ResponseWriter, r *http.Request) {
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
