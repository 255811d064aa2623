// Package httpapi serves inventory-service's REST API: the public catalogue.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/rest"
)

// Handler returns the REST API of svc. The catalogue is public.
func Handler(svc *inventory.Service, log *slog.Logger) http.Handler {
	h := &handler{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/products", h.list)
	mux.HandleFunc("GET /api/products/{sku}", h.get)
	return rest.Chain(rest.Routes(mux), rest.RequestID, rest.AccessLog(log), rest.Recover(log), rest.Deadline)
}

type handler struct {
	svc *inventory.Service
	log *slog.Logger
}

type productJSON struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Price       int64  `json:"price"`
	Currency    string `json:"currency"`
	Stock       int64  `json:"stock"`
}

func toJSON(p inventory.Product) productJSON {
	return productJSON{SKU: p.SKU, Name: p.Name, Description: p.Description, Price: p.Price, Currency: p.Currency, Stock: p.Stock}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ps, err := h.svc.Products(r.Context())
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	out := struct {
		Items []productJSON `json:"items"`
	}{Items: make([]productJSON, 0, len(ps))}
	for _, p := range ps {
		out.Items = append(out.Items, toJSON(p))
	}
	rest.JSON(w, http.StatusOK, out)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	p, err := h.svc.Product(r.Context(), r.PathValue("sku"))
	if err != nil {
		rest.Error(w, r, h.log, err)
		return
	}
	rest.JSON(w, http.StatusOK, toJSON(p))
}
