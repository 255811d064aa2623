// Package clients holds order-service's clients of other services.
package clients

import (
	"context"
	"time"

	"google.golang.org/grpc"

	userv1 "github.com/junction-go/junction/api/gen/user/v1"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/internal/order"
)

// Users calls user-service's gRPC UserService. It is safe for concurrent
// use.
type Users struct {
	client  userv1.UserServiceClient
	timeout time.Duration
}

var _ order.Users = (*Users)(nil)

// NewUsers returns a client over conn (dialled with client-side discovery
// and token forwarding); each call gets at most timeout, within the
// caller's own deadline.
func NewUsers(conn grpc.ClientConnInterface, timeout time.Duration) *Users {
	return &Users{client: userv1.NewUserServiceClient(conn), timeout: timeout}
}

// GetUser returns the user id. The call does not retry here: a failed
// lookup fails the request, which its caller may retry with the same
// Idempotency-Key.
func (u *Users) GetUser(ctx context.Context, id int64) (order.User, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.client.GetUser(ctx, &userv1.UserRequest{UserId: id})
	if err != nil {
		return order.User{}, faultgrpc.FromClient(ctx, "user-service", err)
	}
	return order.User{ID: resp.GetUserId(), Username: resp.GetUsername()}, nil
}
