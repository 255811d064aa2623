// Package grpcapi serves user-service's gRPC API, user.v1.UserService, with
// the standard health service and server reflection.
package grpcapi

import (
	"context"

	"google.golang.org/grpc"

	userv1 "github.com/junction-go/junction/api/gen/user/v1"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/auth/grpcauth"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/internal/user"
)

// NewServer returns a gRPC server offering UserService (every call needs a
// valid access token) and reflection; internal/instance adds health.
func NewServer(svc *user.Service, v *auth.Verifier, opts ...grpc.ServerOption) *grpc.Server {
	return grpcauth.NewServer(&userv1.UserService_ServiceDesc, &server{svc: svc}, v, opts...)
}

type server struct {
	userv1.UnimplementedUserServiceServer
	svc *user.Service
}

func (s *server) GetUser(ctx context.Context, req *userv1.UserRequest) (*userv1.UserResponse, error) {
	p, _ := auth.FromContext(ctx)
	u, err := s.svc.GetUser(ctx, p, req.GetUserId())
	if err != nil {
		return nil, faultgrpc.Status(err)
	}
	return &userv1.UserResponse{UserId: u.ID, Username: u.Username, Role: u.Role, DisplayName: u.DisplayName}, nil
}
