// Package httpapi serves notification-service's REST API: a customer's own
// notifications.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/internal/notification"
	"github.com/junction-go/junction/rest"
)

// Handler returns the REST API of svc; v verifies access tokens.
func Handler(svc *notification.Service, v *auth.Verifier, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/notifications", func(w http.ResponseWriter, r *http.Request) {
		limit, err := rest.IntQuery(r, "limit", 20)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		p, _ := auth.FromContext(r.Context())
		ns, err := svc.List(r.Context(), p, limit)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		type item struct {
			OrderID   int64  `json:"orderId"`
			Event     string `json:"event"`
			EventID   string `json:"eventId"`
			Text      string `json:"text"`
			CreatedAt string `json:"createdAt"`
		}
		out := struct {
			Items []item `json:"items"`
		}{Items: make([]item, 0, len(ns))}
		for _, n := range ns {
			out.Items = append(out.Items, item{OrderID: n.OrderID, Event: n.Event, EventID: n.EventID, Text: n.Text, CreatedAt: n.CreatedAt.Format("2006-01-02T15:04:05.000Z07:00")})
		}
		rest.JSON(w, http.StatusOK, out)
	})
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline, auth.Require(v, log))
}
