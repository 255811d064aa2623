// Package httpapi serves deadletter-service's admin API.
package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/deadletter"
	"github.com/junction-go/junction/rest"
)

// LetterJSON is a dead letter as the API shows it. The body is shown as
// text when it is UTF-8 and base64 otherwise (BodyBase64 set).
type LetterJSON struct {
	ID         int64             `json:"id"`
	MessageID  string            `json:"messageId"`
	Topic      string            `json:"topic"`
	Group      string            `json:"group"`
	Type       string            `json:"type"`
	Reason     string            `json:"reason"`
	Attempts   int               `json:"attempts"`
	DiedAt     string            `json:"diedAt"`
	Status     string            `json:"status"`
	Redrives   int               `json:"redrives"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	BodyBase64 []byte            `json:"bodyBase64,omitempty"`
}

func toJSON(l deadletter.Letter, full bool) LetterJSON {
	out := LetterJSON{ID: l.ID, MessageID: l.MessageID, Topic: l.Topic, Group: l.Group, Type: l.Type, Reason: l.Reason,
		Attempts: l.Attempts, DiedAt: l.DiedAt.Format("2006-01-02T15:04:05.000Z07:00"), Status: l.Status, Redrives: l.Redrives}
	if full {
		out.Headers = l.Headers
		if isText(l.Body) {
			out.Body = string(l.Body)
		} else {
			out.BodyBase64 = l.Body
		}
	}
	return out
}

func isText(b []byte) bool {
	for _, r := range string(b) {
		if r == '\uFFFD' || (r < 0x20 && r != '\n' && r != '\r' && r != '\t') {
			return false
		}
	}
	return true
}

// Handler returns the admin API of svc; v verifies access tokens.
func Handler(svc *deadletter.Service, v *auth.Verifier, log *slog.Logger) http.Handler {
	id := func(w http.ResponseWriter, r *http.Request) (int64, bool) {
		n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || n < 1 {
			rest.Error(w, r, log, fault.New(fault.Invalid, "dead letter id must be a positive integer"))
			return 0, false
		}
		return n, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/admin/deadletters", func(w http.ResponseWriter, r *http.Request) {
		limit, err := rest.IntQuery(r, "limit", 50)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		p, _ := auth.FromContext(r.Context())
		ls, err := svc.List(r.Context(), p, limit)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		out := struct {
			Items []LetterJSON `json:"items"`
		}{Items: make([]LetterJSON, 0, len(ls))}
		for _, l := range ls {
			out.Items = append(out.Items, toJSON(l, false))
		}
		rest.JSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/admin/deadletters/{id}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := id(w, r)
		if !ok {
			return
		}
		p, _ := auth.FromContext(r.Context())
		l, err := svc.Get(r.Context(), p, n)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		rest.JSON(w, http.StatusOK, toJSON(l, true))
	})
	mux.HandleFunc("POST /api/admin/deadletters/{id}/redrive", func(w http.ResponseWriter, r *http.Request) {
		n, ok := id(w, r)
		if !ok {
			return
		}
		p, _ := auth.FromContext(r.Context())
		l, err := svc.Redrive(r.Context(), p, n)
		if err != nil {
			rest.Error(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "dead letter redriven", "by", p.Username, "id", l.ID, "message_id", l.MessageID, "topic", l.Topic, "group", l.Group)
		rest.JSON(w, http.StatusOK, toJSON(l, false))
	})
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline, auth.Require(v, log))
}
