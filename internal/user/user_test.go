package user_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/user"
	"github.com/junction-go/junction/internal/user/store"
	"github.com/junction-go/junction/sqldb"
	_ "github.com/junction-go/junction/sqldb/sqlite"
)

// newService returns a started service over a real SQLite file at path.
func newService(t *testing.T, path string) *user.Service {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := user.NewService(st, 0, nil)
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestLoginIssuesAVerifiableToken(t *testing.T) {
	ctx := context.Background()
	svc := newService(t, filepath.Join(t.TempDir(), "users.db"))
	if _, err := svc.CreateUser(ctx, user.NewUser{Username: "alice", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Login(ctx, "alice", "junction")
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifier(auth.StaticKeySource(svc.JWKS), nil).Verify(ctx, tok.AccessToken)
	if err != nil || p.Username != "alice" || p.Role != auth.RoleCustomer || tok.ExpiresIn != auth.TokenExpiry {
		t.Errorf("token verifies to %+v, %v (expires in %v)", p, err, tok.ExpiresIn)
	}
	for _, c := range []struct{ user, pass string }{{"alice", "wrong"}, {"nobody", "junction"}, {"alice", string(make([]byte, 100))}} {
		if _, err := svc.Login(ctx, c.user, c.pass); !fault.Is(err, fault.Unauthorized) || fault.Message(err) != "wrong username or password" {
			t.Errorf("Login(%q, %.8q) = %v, want the one unauthorized message", c.user, c.pass, err)
		}
	}
	if _, err := svc.Login(ctx, "", ""); !fault.Is(err, fault.Invalid) {
		t.Errorf("Login with nothing = %v, want invalid", err)
	}
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	ctx := context.Background()
	first := newService(t, path)
	if _, err := first.CreateUser(ctx, user.NewUser{Username: "bob", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	tok, err := first.Login(ctx, "bob", "junction")
	if err != nil {
		t.Fatal(err)
	}
	second := newService(t, path)
	if _, err := auth.NewVerifier(auth.StaticKeySource(second.JWKS), nil).Verify(ctx, tok.AccessToken); err != nil {
		t.Errorf("a token from before the restart does not verify after it: %v", err)
	}
}

func TestGetUserVisibility(t *testing.T) {
	ctx := context.Background()
	svc := newService(t, filepath.Join(t.TempDir(), "users.db"))
	a, _ := svc.CreateUser(ctx, user.NewUser{Username: "alice", Password: "junction", Role: auth.RoleCustomer})
	b, _ := svc.CreateUser(ctx, user.NewUser{Username: "bob", Password: "junction", Role: auth.RoleCustomer})
	asAlice := auth.Principal{UserID: a.ID, Role: auth.RoleCustomer}
	asAdmin := auth.Principal{UserID: 99, Role: auth.RoleAdmin}
	if u, err := svc.GetUser(ctx, asAlice, a.ID); err != nil || u.Username != "alice" {
		t.Errorf("alice reads herself = %+v, %v", u, err)
	}
	if _, err := svc.GetUser(ctx, asAlice, b.ID); !fault.Is(err, fault.NotFound) {
		t.Errorf("alice reads bob = %v, want not found", err)
	}
	if u, err := svc.GetUser(ctx, asAdmin, b.ID); err != nil || u.Username != "bob" {
		t.Errorf("admin reads bob = %+v, %v", u, err)
	}
	if _, err := svc.GetUser(ctx, asAdmin, 12345); !fault.Is(err, fault.NotFound) {
		t.Errorf("admin reads a missing user = %v, want not found", err)
	}
	if _, err := svc.GetUser(ctx, asAdmin, 0); !fault.Is(err, fault.Invalid) {
		t.Errorf("GetUser(0) = %v, want invalid", err)
	}
}

func TestCreateUserRules(t *testing.T) {
	ctx := context.Background()
	svc := newService(t, filepath.Join(t.TempDir(), "users.db"))
	if _, err := svc.CreateUser(ctx, user.NewUser{Username: "carol", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    user.NewUser
		want fault.Kind
	}{
		{user.NewUser{Username: "carol", Password: "junction", Role: auth.RoleCustomer}, fault.Conflict},
		{user.NewUser{Username: "", Password: "junction", Role: auth.RoleCustomer}, fault.Invalid},
		{user.NewUser{Username: "a b", Password: "junction", Role: auth.RoleCustomer}, fault.Invalid},
		{user.NewUser{Username: "dave", Password: "short", Role: auth.RoleCustomer}, fault.Invalid},
		{user.NewUser{Username: "dave", Password: "junction", Role: "root"}, fault.Invalid},
	}
	for _, tt := range tests {
		if _, err := svc.CreateUser(ctx, tt.n); fault.KindOf(err) != tt.want || err == nil {
			t.Errorf("CreateUser(%+v) = %v, want %v", tt.n, err, tt.want)
		}
	}
	created, err := svc.EnsureUser(ctx, user.NewUser{Username: "carol", Password: "other-password", Role: auth.RoleCustomer})
	if err != nil || created {
		t.Errorf("EnsureUser of an existing user = %v, %v; want false, nil", created, err)
	}
}
