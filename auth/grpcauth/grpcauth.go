// Package grpcauth carries access tokens over gRPC: a server interceptor that
// verifies the bearer token in the "authorization" metadata, and call
// credentials that pass on the token of the request being served.
package grpcauth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// UnaryServerInterceptor verifies the bearer token of every call to a method
// whose full name starts with one of prefixes (for example
// "/user.v1.UserService/"), and puts its principal in the context. Calls to
// other methods (health, reflection) pass untouched.
func UnaryServerInterceptor(v *auth.Verifier, prefixes ...string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !protected(info.FullMethod, prefixes) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		var token string
		if vals := md.Get("authorization"); len(vals) == 1 {
			token = auth.BearerToken(vals[0])
		}
		if token == "" {
			return nil, status.Error(codes.Unauthenticated, "a bearer token is required")
		}
		p, err := v.Verify(ctx, token)
		if err != nil {
			if fault.Is(err, fault.Unavailable) {
				return nil, status.Error(codes.Unavailable, fault.Message(err))
			}
			return nil, status.Error(codes.Unauthenticated, "invalid access token")
		}
		return handler(auth.WithToken(auth.WithPrincipal(ctx, p), token), req)
	}
}

func protected(method string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// ForwardToken returns a dial option that sends, with every call, the bearer
// token carried by the call's context (auth.WithToken).
func ForwardToken() grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if t := auth.TokenFromContext(ctx); t != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+t)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// NewServer returns a gRPC server offering desc's service (impl), every
// call to it authenticated by v, with requests of at most 64 KiB and server
// reflection (so grpcurl works). Health is the runtime's to add, from the
// process's own readiness (internal/instance does).
func NewServer(desc *grpc.ServiceDesc, impl any, v *auth.Verifier, opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(v, "/"+desc.ServiceName+"/")),
		grpc.MaxRecvMsgSize(64<<10),
	)
	s := grpc.NewServer(opts...)
	s.RegisterService(desc, impl)
	reflection.Register(s)
	return s
}
