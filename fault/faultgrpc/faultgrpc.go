// Package faultgrpc turns error kinds into gRPC status codes and back, in
// one place for every gRPC server and client.
package faultgrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/fault"
)

// Status turns a classified error into a gRPC status error; an internal
// error's detail is not sent.
func Status(err error) error {
	return status.Error(Code(fault.KindOf(err)), fault.Message(err))
}

// Code returns the gRPC code of an error kind.
func Code(k fault.Kind) codes.Code {
	switch k {
	case fault.Invalid, fault.TooLarge:
		return codes.InvalidArgument
	case fault.NotFound:
		return codes.NotFound
	case fault.Conflict:
		return codes.Aborted
	case fault.Unauthorized:
		return codes.Unauthenticated
	case fault.Forbidden:
		return codes.PermissionDenied
	case fault.Unavailable:
		return codes.Unavailable
	case fault.Timeout:
		return codes.DeadlineExceeded
	case fault.RateLimited:
		return codes.ResourceExhausted
	default:
		return codes.Internal
	}
}

// Kind returns the error kind of a gRPC status code, as seen by a client:
// the server's own failures and an unreachable server are Unavailable to the
// caller, who did nothing wrong.
func Kind(c codes.Code) fault.Kind {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return fault.Invalid
	case codes.NotFound:
		return fault.NotFound
	case codes.AlreadyExists, codes.Aborted:
		return fault.Conflict
	case codes.Unauthenticated:
		return fault.Unauthorized
	case codes.PermissionDenied:
		return fault.Forbidden
	case codes.DeadlineExceeded:
		return fault.Timeout
	case codes.ResourceExhausted:
		return fault.RateLimited
	default:
		return fault.Unavailable
	}
}

// FromClient classifies the error of a client call to what: the status's kind
// with its message, or Timeout when ctx's deadline passed.
func FromClient(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fault.Wrap(fault.Timeout, err, "%s timed out", what)
	}
	st, _ := status.FromError(err)
	k := Kind(st.Code())
	if k == fault.Unavailable {
		return fault.Wrap(k, err, "%s is unavailable", what)
	}
	return fault.Wrap(k, err, "%s: %s", what, st.Message())
}
