// Package clients holds order-service's clients of other services.
package clients

import (
	"context"

	"google.golang.org/grpc"

	userv1 "github.com/junction-go/junction/api/gen/user/v1"
	"github.com/junction-go/junction/fault/faultgrpc"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/resilience"
)

// Users calls user-service's gRPC UserService under its policy. It is
// safe for concurrent use.
type Users struct {
	client userv1.UserServiceClient
	policy *resilience.Policy
}

var _ order.Users = (*Users)(nil)

// NewUsers returns a client over conn (dialled with client-side discovery
// and token forwarding), protected by policy (see UserServicePolicy).
func NewUsers(conn grpc.ClientConnInterface, policy *resilience.Policy) *Users {
	return &Users{client: userv1.NewUserServiceClient(conn), policy: policy}
}

// GetUser returns the user id. Faults are retried by the policy (this is
// the only layer that retries); answers (not found) come back at once.
func (u *Users) GetUser(ctx context.Context, id int64) (order.User, error) {
	var resp *userv1.UserResponse
	err := u.policy.Do(ctx, func(ctx context.Context) error {
		var err error
		resp, err = u.client.GetUser(ctx, &userv1.UserRequest{UserId: id})
		return faultgrpc.FromClient(ctx, "user-service", err)
	})
	if err != nil {
		return order.User{}, err
	}
	return order.User{ID: resp.GetUserId(), Username: resp.GetUsername()}, nil
}
