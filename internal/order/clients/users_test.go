package clients_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	userv1 "github.com/junction-go/junction/api/gen/user/v1"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/order/clients"
	"github.com/junction-go/junction/resilience"
)

// flakyUsers answers UNAVAILABLE for its first failures calls, then the
// user, or NOT_FOUND for id 404.
type flakyUsers struct {
	userv1.UnimplementedUserServiceServer
	calls    atomic.Int64
	failures int64
}

func (f *flakyUsers) GetUser(_ context.Context, r *userv1.UserRequest) (*userv1.UserResponse, error) {
	if f.calls.Add(1) <= f.failures {
		return nil, status.Error(codes.Unavailable, "starting up")
	}
	if r.GetUserId() == 404 {
		return nil, status.Error(codes.NotFound, "no such user")
	}
	return &userv1.UserResponse{UserId: r.GetUserId(), Username: "alice"}, nil
}

func serve(t *testing.T, srv userv1.UserServiceServer) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	userv1.RegisterUserServiceServer(s, srv)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGetUserRetriesUnavailableOnly(t *testing.T) {
	fake := &flakyUsers{failures: 2}
	users := clients.NewUsers(serve(t, fake), resilience.New(clients.UserServicePolicy(nil)))
	u, err := users.GetUser(context.Background(), 7)
	if err != nil || u.Username != "alice" || fake.calls.Load() != 3 {
		t.Errorf("GetUser through two UNAVAILABLEs = %+v, %v after %d calls; want alice after 3", u, err, fake.calls.Load())
	}
	before := fake.calls.Load()
	if _, err := users.GetUser(context.Background(), 404); !fault.Is(err, fault.NotFound) || fake.calls.Load() != before+1 {
		t.Errorf("GetUser of a missing user = %v after %d calls; want not found after 1", err, fake.calls.Load()-before)
	}
}

func TestGetUserWhenUserServiceStaysDown(t *testing.T) {
	fake := &flakyUsers{failures: 1 << 30}
	policy := resilience.New(clients.UserServicePolicy(nil))
	users := clients.NewUsers(serve(t, fake), policy)
	for range 3 {
		if _, err := users.GetUser(context.Background(), 7); !fault.Is(err, fault.Unavailable) {
			t.Fatalf("GetUser with user-service down = %v, want unavailable", err)
		}
	}
	if policy.BreakerState() != "open" {
		t.Errorf("breaker after repeated faults = %s, want open", policy.BreakerState())
	}
	before := fake.calls.Load()
	if _, err := users.GetUser(context.Background(), 7); !fault.Is(err, fault.Unavailable) || fake.calls.Load() != before {
		t.Errorf("with the breaker open: %v and %d calls reached user-service; want unavailable and none", err, fake.calls.Load()-before)
	}
}
