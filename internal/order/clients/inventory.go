package clients

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	inventoryv1 "github.com/junction-go/junction/api/gen/inventory/v1"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/resilience"
)

// Inventory calls inventory-service's gRPC InventoryService under its
// policy. It is safe for concurrent use.
type Inventory struct {
	client inventoryv1.InventoryServiceClient
	policy *resilience.Policy
	log    *slog.Logger
}

var _ order.Stock = (*Inventory)(nil)

// NewInventory returns a client over conn, protected by policy (see
// InventoryPolicy).
func NewInventory(conn grpc.ClientConnInterface, policy *resilience.Policy, log *slog.Logger) *Inventory {
	return &Inventory{client: inventoryv1.NewInventoryServiceClient(conn), policy: policy, log: log}
}

// Shortages asks CheckAvailability. A fault is logged here, with the
// fallback order-service takes (order.FallbackUncheckedStock), and
// returned.
func (c *Inventory) Shortages(ctx context.Context, items []order.Item) ([]order.Shortage, error) {
	req := &inventoryv1.CheckAvailabilityRequest{}
	for _, it := range items {
		req.Lines = append(req.Lines, &inventoryv1.Line{Sku: it.SKU, Quantity: int64(it.Quantity)})
	}
	var resp *inventoryv1.CheckAvailabilityResponse
	err := c.policy.Do(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.client.CheckAvailability(ctx, req)
		return faultgrpc.FromClient(ctx, "inventory-service", err)
	})
	if err != nil {
		if resilience.IsTransient(err) {
			c.log.WarnContext(ctx, "fallback", "dependency", "inventory-service", "fallback", order.FallbackUncheckedStock, "err", err)
		}
		return nil, err
	}
	var out []order.Shortage
	for _, s := range resp.GetShortages() {
		out = append(out, order.Shortage{SKU: s.GetSku(), Requested: s.GetRequested(), Available: s.GetAvailable(), Unknown: s.GetUnknown()})
	}
	return out, nil
}
