package identity

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/junction-go/junction/rest"
)

// Any, as a rule's caller, is every identity of the trust domain.
const Any = "*"

// Rule lets Callers (service names, Operator, or Any) call what Pattern
// matches: an http.ServeMux pattern ("GET /.well-known/jwks.json",
// "/api/") for HTTP, or for gRPC a full method
// ("/junction.user.v1.UserService/GetUser") or a service's prefix
// ("/junction.user.v1.UserService/").
type Rule struct {
	Pattern string
	Callers []string
}

// Policy is one server's rules: a call that no rule lets its caller make
// is refused (403, PermissionDenied), and so is a call with no identity.
// HTTP patterns match as a ServeMux would, the most specific winning; gRPC
// patterns are a method or the longest matching prefix.
type Policy struct {
	mux  *http.ServeMux
	rpcs map[string][]string
}

// NewPolicy checks and compiles rules; patterns starting with "/" and
// holding a second "/" after a dot-qualified service name are gRPC's.
func NewPolicy(rules []Rule) (p *Policy, err error) {
	p = &Policy{mux: http.NewServeMux(), rpcs: map[string][]string{}}
	defer func() {
		// ServeMux refuses a bad or duplicate pattern by panicking.
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("policy: %v", r)
		}
	}()
	for _, r := range rules {
		if len(r.Callers) == 0 {
			return nil, fmt.Errorf("policy: %q lets nobody call it", r.Pattern)
		}
		if isRPC(r.Pattern) {
			if _, dup := p.rpcs[r.Pattern]; dup {
				return nil, fmt.Errorf("policy: %q twice", r.Pattern)
			}
			p.rpcs[r.Pattern] = r.Callers
			continue
		}
		p.mux.Handle(r.Pattern, callers(r.Callers))
	}
	return p, nil
}

// isRPC reports whether pattern names a gRPC service or method
// ("/pkg.Service/…").
func isRPC(pattern string) bool {
	svc, _, ok := strings.Cut(strings.TrimPrefix(pattern, "/"), "/")
	return strings.HasPrefix(pattern, "/") && ok && strings.Contains(svc, ".")
}

type callers []string

func (callers) ServeHTTP(http.ResponseWriter, *http.Request) {}

func allowed(list []string, caller string) bool {
	return slices.Contains(list, Any) || slices.Contains(list, caller)
}

// AllowsHTTP reports whether caller (a service name) may make r.
func (p *Policy) AllowsHTTP(r *http.Request, caller string) bool {
	h, _ := p.mux.Handler(r)
	c, ok := h.(callers)
	return ok && allowed(c, caller)
}

// AllowsRPC reports whether caller may call the gRPC method.
func (p *Policy) AllowsRPC(method, caller string) bool {
	if c, ok := p.rpcs[method]; ok {
		return allowed(c, caller)
	}
	best := ""
	for prefix := range p.rpcs {
		if strings.HasSuffix(prefix, "/") && strings.HasPrefix(method, prefix) && len(prefix) > len(best) {
			best = prefix
		}
	}
	return best != "" && allowed(p.rpcs[best], caller)
}

// HTTP refuses, with 403, every request its caller may not make.
func (p *Policy) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := Caller(r)
		if !ok {
			rest.WriteProblem(w, r, http.StatusForbidden, "forbidden", "this port takes only callers with a certificate of "+TrustDomain.Name())
			return
		}
		if !p.AllowsHTTP(r, Name(id)) {
			rest.WriteProblem(w, r, http.StatusForbidden, "forbidden", id.String()+" may not call "+r.Method+" "+r.URL.Path)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// UnaryInterceptor refuses, with PermissionDenied, every call its caller
// may not make.
func (p *Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := p.checkRPC(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams (health's Watch,
// reflection).
func (p *Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := p.checkRPC(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

// ServerOptions are a gRPC server's mTLS credentials and p's interceptors.
func (p *Policy) ServerOptions(s *Source) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(s.GRPCServerCredentials()),
		grpc.ChainUnaryInterceptor(p.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(p.StreamInterceptor()),
	}
}

func (p *Policy) checkRPC(ctx context.Context, method string) error {
	id, ok := GRPCCaller(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "this port takes only callers with a certificate of "+TrustDomain.Name())
	}
	if !p.AllowsRPC(method, Name(id)) {
		return status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
	}
	return nil
}
