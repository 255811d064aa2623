package auth

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

type principalKey struct{}
type tokenKey struct{}

// WithToken returns ctx carrying the raw bearer token a request came with,
// so calls made on the caller's behalf can pass it on.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFromContext returns the raw bearer token ctx carries, or "".
func TokenFromContext(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal a verified token put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header
// value, or "".
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Require returns middleware that lets a request through only with a valid
// bearer token, and puts its principal in the request's context. Without
// one it answers 401 with WWW-Authenticate: Bearer, the realm being the
// verifier's audience.
func Require(v *Verifier, log *slog.Logger) rest.Middleware {
	realm := strconv.Quote(v.scope.Audience)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.Header.Values("Authorization")) > 1 {
				rest.Error(w, r, log, fault.New(fault.Invalid, "send one Authorization header"))
				return
			}
			token := BearerToken(r.Header.Get("Authorization"))
			if token == "" {
				w.Header().Set("WWW-Authenticate", "Bearer realm="+realm)
				rest.Error(w, r, log, fault.New(fault.Unauthorized, "a bearer token is required"))
				return
			}
			p, err := v.Verify(r.Context(), token)
			if err != nil {
				if fault.Is(err, fault.Unauthorized) {
					w.Header().Set("WWW-Authenticate", "Bearer realm="+realm+`, error="invalid_token"`)
					log.InfoContext(r.Context(), "token rejected", "err", err)
				}
				rest.Error(w, r, log, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithToken(WithPrincipal(r.Context(), p), token)))
		})
	}
}
