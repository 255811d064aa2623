package grpcapi_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/junction-go/junction/api/gen/inventory/v1"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/internal/inventory"
	"github.com/junction-go/junction/internal/inventory/grpcapi"
	"github.com/junction-go/junction/internal/inventory/store"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

// TestStockToolsWorkAndCallsNeedAToken serves InventoryService on a real
// socket: reflection lists the service (what grpcurl asks), and a call
// without a token is refused. (Health is the instance's: see
// internal/instance.)
func TestStockToolsWorkAndCallsNeedAToken(t *testing.T) {
	ctx := context.Background()
	st, err := store.New(ctx, sqldbtest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(auth.StaticKeySource(func() auth.JWKS { return auth.JWKS{} }), nil)
	srv := grpcapi.NewServer(inventory.NewService(st), v)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed = listed || s.GetName() == "inventory.v1.InventoryService"
	}
	if !listed {
		t.Errorf("reflection lists %v, want inventory.v1.InventoryService", resp.GetListServicesResponse().GetService())
	}

	_, err = inventoryv1.NewInventoryServiceClient(conn).CheckAvailability(ctx, &inventoryv1.CheckAvailabilityRequest{Lines: []*inventoryv1.Line{{Sku: "JX-MUG", Quantity: 1}}})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call without a token = %v, want Unauthenticated", err)
	}
}
