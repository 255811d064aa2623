// Package httpapi serves shipping-service's REST API: a customer's view of
// an order's shipment. Every route needs a valid access token.
package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/shipping"
	"github.com/junction-go/junction/rest"
)

// Handler returns the REST API of svc; v verifies access tokens.
func Handler(svc *shipping.Service, v *auth.Verifier, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/shipments/{orderId}", h.get)
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline, auth.Require(v, log))
}

type handler struct {
	svc *shipping.Service
	log *slog.Logger
}

type shipmentJSON struct {
	OrderID      int64  `json:"orderId"`
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	TrackingCode string `json:"trackingCode,omitempty"`
	DispatchAt   string `json:"dispatchAt,omitempty"`
	DispatchedAt string `json:"dispatchedAt,omitempty"`
	UpdatedAt    string `json:"updatedAt"`
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("orderId"), 10, 64)
	if err != nil {
		rest.Error(w, r, h.log, fault.New(fault.Invalid, "order id must be a positive integer"))
		return
	}
	p, _ := auth.FromContext(r.Context())
	sh, err := h.svc.Get(r.Context(), p, id)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	out := shipmentJSON{OrderID: sh.OrderID, Status: string(sh.State), Reason: sh.Reason, TrackingCode: sh.TrackingCode, UpdatedAt: sh.UpdatedAt.Format(timeFormat)}
	if !sh.DispatchAt.IsZero() {
		out.DispatchAt = sh.DispatchAt.Format(timeFormat)
	}
	if !sh.DispatchedAt.IsZero() {
		out.DispatchedAt = sh.DispatchedAt.Format(timeFormat)
	}
	rest.JSON(w, http.StatusOK, out)
}
