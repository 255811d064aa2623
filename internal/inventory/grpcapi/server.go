// Package grpcapi serves inventory-service's gRPC API,
// inventory.v1.InventoryService, with the standard health service and
// server reflection.
package grpcapi

import (
	"context"

	"google.golang.org/grpc"

	inventoryv1 "github.com/junction-go/junction/api/gen/inventory/v1"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/auth/grpcauth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/internal/inventory"
)

// NewServer returns a gRPC server offering InventoryService (every call
// needs a valid access token) and reflection; internal/instance adds health.
func NewServer(svc *inventory.Service, v *auth.Verifier, opts ...grpc.ServerOption) *grpc.Server {
	return grpcauth.NewServer(&inventoryv1.InventoryService_ServiceDesc, &server{svc: svc}, v, opts...)
}

type server struct {
	inventoryv1.UnimplementedInventoryServiceServer
	svc *inventory.Service
}

func (s *server) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	if n := len(req.GetSkus()); n == 0 || n > 100 {
		return nil, faultgrpc.Status(fault.New(fault.Invalid, "ask for 1 to 100 SKUs"))
	}
	resp := &inventoryv1.GetStockResponse{}
	for _, sku := range req.GetSkus() {
		p, err := s.svc.Product(ctx, sku)
		if err != nil {
			return nil, faultgrpc.Status(err)
		}
		resp.Stock = append(resp.Stock, &inventoryv1.Stock{Sku: p.SKU, Available: p.Stock})
	}
	return resp, nil
}

func (s *server) CheckAvailability(ctx context.Context, req *inventoryv1.CheckAvailabilityRequest) (*inventoryv1.CheckAvailabilityResponse, error) {
	lines := make([]inventory.Line, len(req.GetLines()))
	for i, l := range req.GetLines() {
		lines[i] = inventory.Line{SKU: l.GetSku(), Quantity: l.GetQuantity()}
	}
	short, err := s.svc.Availability(ctx, lines)
	if err != nil {
		return nil, faultgrpc.Status(err)
	}
	resp := &inventoryv1.CheckAvailabilityResponse{Available: len(short) == 0}
	for _, sh := range short {
		resp.Shortages = append(resp.Shortages, &inventoryv1.Shortage{Sku: sh.SKU, Requested: sh.Requested, Available: sh.Available, Unknown: sh.Unknown})
	}
	return resp, nil
}
