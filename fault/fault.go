// Package fault classifies errors by kind, once, where they arise, so that the
// edges (HTTP, gRPC, message handlers) can turn them into a status code without
// knowing where they came from.
//
// A kind travels inside the error chain: wrap a classified error with %w and
// the kind survives. An error that carries no kind is Internal.
package fault

import (
	"errors"
	"fmt"
)

// Kind is what a caller can do about an error.
type Kind int

// The kinds. The zero value is Internal, so an unclassified error is never
// mistaken for the caller's fault.
const (
	Internal     Kind = iota // a bug or an unexpected failure: logged, never detailed to the caller
	Invalid                  // the request is malformed or breaks a rule; do not retry it unchanged
	NotFound                 // no such thing, or the caller may not know that it exists
	Conflict                 // the request clashes with the current state
	Unauthorized             // no valid credentials
	Forbidden                // valid credentials, not allowed
	Unavailable              // a dependency is down or overloaded; retrying later may succeed
	Timeout                  // the deadline passed before the work finished
	TooLarge                 // the request body is larger than the limit
	RateLimited              // the caller sends too much; retry after a while
)

var names = [...]string{"internal", "invalid", "not found", "conflict", "unauthorized", "forbidden", "unavailable", "timeout", "too large", "rate limited"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(names) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return names[k]
}

// Error is an error with a kind and a message that is safe to show the caller.
type Error struct {
	Kind Kind
	// Msg is shown to the caller as is; keep internal detail in Err.
	Msg string
	// Err is the cause, if any; it is logged, never shown.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind k whose message is shown to callers.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err as kind k with a caller-safe message. Wrap(k, nil, …)
// returns nil.
func Wrap(k Kind, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the kind of the outermost classified error in err's chain,
// and Internal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Message returns the caller-safe message of err: the message of its
// outermost classified error, or a generic text for Internal errors so that
// internal detail never leaks.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal && e.Msg != "" {
		return e.Msg
	}
	return "internal error"
}

// Is reports whether err is classified as kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }
