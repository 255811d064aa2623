// Package httpapi serves order-service's REST API: place, read and list
// orders. Every route needs a valid access token.
package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/telemetry"
)

// Handler returns the REST API of svc; v verifies access tokens.
func Handler(svc *order.Service, v *auth.Verifier, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/orders", h.create)
	mux.HandleFunc("GET /api/orders", h.list)
	mux.HandleFunc("GET /api/orders/{id}", h.get)
	mux.HandleFunc("POST /api/orders/{id}/cancel", h.cancel)
	mux.HandleFunc("GET /api/orders/{id}/events", h.events)
	mux.HandleFunc("GET /api/admin/sagas", h.sagas)
	mux.HandleFunc("GET /api/admin/sagas/{id}", h.saga)
	api := rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline, auth.Require(v, log))
	if a := svc.Admission(); a != nil {
		return reportRoom(a, api)
	}
	return api
}

// reportRoom tells the gateway, on every answer, how much room order
// admission has left as it answers (services.RoomHeader), and counts the
// new orders the gateway says it refused for want of it
// (services.RefusedHeader). An answer to a long poll goes when its order
// has ended, so the gateway hears of room as it opens.
func reportRoom(a *order.Admission, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(services.RefusedHeader); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				a.RefusedElsewhere(n)
			}
		}
		next.ServeHTTP(&roomWriter{ResponseWriter: w, a: a}, r)
	})
}

// roomWriter sets services.RoomHeader as the answer's header goes.
type roomWriter struct {
	http.ResponseWriter
	a       *order.Admission
	stamped bool
}

func (w *roomWriter) stamp() {
	if !w.stamped {
		w.stamped = true
		w.Header().Set(services.RoomHeader, w.a.Room().String())
	}
}

func (w *roomWriter) WriteHeader(code int) {
	w.stamp()
	w.ResponseWriter.WriteHeader(code)
}

func (w *roomWriter) Write(b []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (w *roomWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// LongPoll tells a request that waits for its order's verdict (GET with
// ?wait=): its time is its client's wait, not work, so a server limit
// that measures time lets it through.
func LongPoll(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Has("wait")
}

type handler struct {
	svc *order.Service
	log *slog.Logger
}

type itemJSON struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type createRequest struct {
	Items []itemJSON `json:"items"`
	// Card is the card token to pay with; 4000000000000002 is always
	// declined by the demo payment provider.
	Card string `json:"card"`
}

type stepJSON struct {
	Saga   string `json:"saga"`
	Step   string `json:"step,omitempty"`
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
	At     string `json:"at"`
}

type orderJSON struct {
	OrderID   int64      `json:"orderId"`
	UserID    int64      `json:"userId"`
	Status    string     `json:"status"`
	Items     []itemJSON `json:"items"`
	Reason    string     `json:"reason,omitempty"`
	CreatedAt string     `json:"createdAt"`
	UpdatedAt string     `json:"updatedAt"`
	// Steps is the saga's history, on GET of one order.
	Steps []stepJSON `json:"steps,omitempty"`
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func toJSON(o order.Order) orderJSON {
	out := orderJSON{
		OrderID: o.ID, UserID: o.UserID, Status: string(o.Status),
		Items:     make([]itemJSON, 0, len(o.Items)),
		Reason:    o.Reason,
		CreatedAt: o.CreatedAt.UTC().Format(timeFormat), UpdatedAt: o.UpdatedAt.UTC().Format(timeFormat),
	}
	for _, st := range o.Steps {
		out.Steps = append(out.Steps, stepJSON{Saga: st.Saga, Step: st.Step, Event: st.Event, Detail: st.Detail, At: st.At.UTC().Format(timeFormat)})
	}
	for _, it := range o.Items {
		out.Items = append(out.Items, itemJSON{SKU: it.SKU, Quantity: it.Quantity})
	}
	return out
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := rest.Decode(w, r, 0, &req); err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	items := make([]order.Item, 0, len(req.Items))
	for _, it := range req.Items {
		items = append(items, order.Item{SKU: it.SKU, Quantity: it.Quantity})
	}
	p, _ := auth.FromContext(r.Context())
	placed, err := h.svc.Place(r.Context(), p, items, r.Header.Get("Idempotency-Key"), req.Card)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	telemetry.WithOrderID(r.Context(), placed.Order.ID) // the span's order.id
	w.Header().Set("Location", fmt.Sprintf("/api/orders/%d", placed.Order.ID))
	if placed.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	rest.JSON(w, http.StatusCreated, toJSON(placed.Order))
}

func orderID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, fault.New(fault.Invalid, "order id must be a positive integer")
	}
	telemetry.WithOrderID(r.Context(), id) // the span's order.id
	return id, nil
}

// cancel answers 202 Accepted: the undoing runs after the answer; the
// order's status shows when it is done.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	p, _ := auth.FromContext(r.Context())
	o, err := h.svc.Cancel(r.Context(), p, id)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/orders/%d", id))
	rest.JSON(w, http.StatusAccepted, toJSON(o))
}

// get answers one order; with ?wait=5s it first waits up to that long
// while the order is pending (a long poll for the saga's verdict).
func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		if wait, err = time.ParseDuration(q); err != nil || wait < 0 || wait > order.MaxWait {
			rest.Error(w, r, h.log, fault.New(fault.Invalid, "wait is a duration up to %v, e.g. 5s", order.MaxWait))
			return
		}
	}
	p, _ := auth.FromContext(r.Context())
	o, err := h.svc.Settled(r.Context(), p, id, wait)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	rest.JSON(w, http.StatusOK, toJSON(o))
}

// events answers an order's history after ?after= (a seq; 0 when absent),
// at most ?limit= (100 when absent) entries, oldest first.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	after, limit := int64(0), 100
	q := r.URL.Query()
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			rest.Error(w, r, h.log, fault.New(fault.Invalid, "after is the last seq seen: 0 or more"))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > order.MaxEvents {
			rest.Error(w, r, h.log, fault.New(fault.Invalid, "limit is 1 to %d", order.MaxEvents))
			return
		}
	}
	p, _ := auth.FromContext(r.Context())
	evs, err := h.svc.Events(r.Context(), p, id, after, limit)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	// The entries as the history topic carries them (api/events).
	out := struct {
		OrderID int64                 `json:"orderId"`
		Events  []events.HistoryEntry `json:"events"`
	}{OrderID: id, Events: order.HistoryEntries(evs)}
	rest.JSON(w, http.StatusOK, out)
}

type listJSON struct {
	Items      []orderJSON `json:"items"`
	NextCursor string      `json:"nextCursor,omitempty"`
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	limit, err := rest.IntQuery(r, "limit", 20)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	p, _ := auth.FromContext(r.Context())
	page, err := h.svc.List(r.Context(), p, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	out := listJSON{Items: make([]orderJSON, 0, len(page.Orders)), NextCursor: page.Next}
	for _, o := range page.Orders {
		out.Items = append(out.Items, toJSON(o))
	}
	rest.JSON(w, http.StatusOK, out)
}

type sagaEventJSON struct {
	Step   string `json:"step,omitempty"`
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
	At     string `json:"at"`
}

type sagaJSON struct {
	ID        string          `json:"id"`
	Saga      string          `json:"saga"`
	Status    string          `json:"status"`
	Step      int             `json:"step"`
	Attempt   int             `json:"attempt"`
	Reason    string          `json:"reason,omitempty"`
	Deadline  string          `json:"deadline,omitempty"`
	CreatedAt string          `json:"createdAt"`
	UpdatedAt string          `json:"updatedAt"`
	History   []sagaEventJSON `json:"history,omitempty"`
}

func sagaToJSON(in *saga.Instance) sagaJSON {
	out := sagaJSON{ID: in.ID, Saga: in.Saga, Status: string(in.Status), Step: in.Step, Attempt: in.Attempt, Reason: in.Reason,
		CreatedAt: in.CreatedAt.Format(timeFormat), UpdatedAt: in.UpdatedAt.Format(timeFormat)}
	if !in.DeadlineAt.IsZero() {
		out.Deadline = in.DeadlineAt.Format(timeFormat)
	}
	for _, ev := range in.History {
		out.History = append(out.History, sagaEventJSON{Step: ev.Step, Event: string(ev.Kind), Detail: ev.Detail, At: ev.Time.Format(timeFormat)})
	}
	return out
}

// sagas lists saga instances for administrators:
// ?status=running|compensating|completed|compensated|needs_attention,
// ?limit=1..100, ?cursor= (nextCursor of the previous page).
func (h *handler) sagas(w http.ResponseWriter, r *http.Request) {
	limit, err := rest.IntQuery(r, "limit", 50)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	p, _ := auth.FromContext(r.Context())
	ins, err := h.svc.Sagas(r.Context(), p, r.URL.Query().Get("status"), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	out := struct {
		Items      []sagaJSON `json:"items"`
		NextCursor string     `json:"nextCursor,omitempty"`
	}{Items: make([]sagaJSON, 0, len(ins))}
	for _, in := range ins {
		out.Items = append(out.Items, sagaToJSON(in))
	}
	if len(ins) == limit {
		out.NextCursor = saga.Cursor(ins[len(ins)-1])
	}
	rest.JSON(w, http.StatusOK, out)
}

func (h *handler) saga(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	in, err := h.svc.Saga(r.Context(), p, r.PathValue("id"))
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	rest.JSON(w, http.StatusOK, sagaToJSON(in))
}
