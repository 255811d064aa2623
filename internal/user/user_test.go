package user_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	return newServiceAt(t, path, nil)
}

// newServiceAt is newService with the clock now.
func newServiceAt(t *testing.T, path string, now func() time.Time) *user.Service {
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
	svc := user.NewService(st, 0, now)
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
	tok, err := svc.Login(ctx, "alice", "junction", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifierFor(user.VerifierScope("order-service"), auth.StaticKeySource(svc.JWKS), nil).Verify(ctx, tok.AccessToken)
	if err != nil || p.Username != "alice" || p.Role != auth.RoleCustomer || tok.ExpiresIn != auth.TokenExpiry {
		t.Errorf("token verifies to %+v, %v (expires in %v)", p, err, tok.ExpiresIn)
	}
	// An audience per service: every service that takes tokens finds
	// its name in them; a verifier of another name takes none.
	if _, err := svc.CreateUser(ctx, user.NewUser{Username: "root", Password: "junction", Role: auth.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	admin, err := svc.Login(ctx, "root", "junction", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		verifier, token string
		ok              bool
	}{
		{"deadletter-service", tok.AccessToken, true},
		{"deadletter-service", admin.AccessToken, true},
		{"gateway", tok.AccessToken, true},
		{"payment-service", tok.AccessToken, false},
		{"payment-service", admin.AccessToken, false},
	} {
		_, err := auth.NewVerifierFor(user.VerifierScope(c.verifier), auth.StaticKeySource(svc.JWKS), nil).Verify(ctx, c.token)
		if (err == nil) != c.ok {
			t.Errorf("%s's verifier: err = %v, want accepted = %v", c.verifier, err, c.ok)
		}
	}
	for _, c := range []struct{ user, pass string }{{"alice", "wrong"}, {"nobody", "junction"}, {"alice", string(make([]byte, 100))}} {
		if _, err := svc.Login(ctx, c.user, c.pass, "192.0.2.1"); !fault.Is(err, fault.Unauthorized) || fault.Message(err) != "wrong username or password" {
			t.Errorf("Login(%q, %.8q) = %v, want the one unauthorized message", c.user, c.pass, err)
		}
	}
	if _, err := svc.Login(ctx, "", "", "192.0.2.1"); !fault.Is(err, fault.Invalid) {
		t.Errorf("Login with nothing = %v, want invalid", err)
	}
}

// TestFailedLoginsBackOff: after five failures in a row an account waits
// a second, then two, four, …; meanwhile even its right password is
// refused (429) without being checked; a success starts the count again.
// Twenty failures from one address back off every account tried from it.
func TestFailedLoginsBackOff(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	svc := newServiceAt(t, filepath.Join(t.TempDir(), "users.db"), func() time.Time { return clock })
	for _, name := range []string{"alice", "bob"} {
		if _, err := svc.CreateUser(ctx, user.NewUser{Username: name, Password: "junction", Role: auth.RoleCustomer}); err != nil {
			t.Fatal(err)
		}
	}
	login := func(name, pass, from string) error { _, err := svc.Login(ctx, name, pass, from); return err }
	for i := range 5 {
		if err := login("alice", "guess", "192.0.2.1"); !fault.Is(err, fault.Unauthorized) {
			t.Fatalf("failure %d: %v, want unauthorized", i+1, err)
		}
	}
	var tooMany *user.TooManyLogins
	if err := login("Alice", "junction", "192.0.2.2"); !errors.As(err, &tooMany) || !fault.Is(err, fault.RateLimited) || tooMany.Wait != time.Second {
		t.Fatalf("the right password after five failures: %v, want a 1 s back-off (rate limited), from any address, in any case", err)
	}
	if err := login("bob", "junction", "192.0.2.2"); err != nil {
		t.Errorf("another account: %v", err)
	}
	clock = clock.Add(time.Second)
	if err := login("alice", "guess", "192.0.2.1"); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("after the back-off: %v, want the password checked again", err)
	}
	if err := login("alice", "junction", "192.0.2.1"); !errors.As(err, &tooMany) || tooMany.Wait != 2*time.Second {
		t.Fatalf("after a sixth failure: %v, want a 2 s back-off", err)
	}
	clock = clock.Add(2 * time.Second)
	if err := login("alice", "junction", "192.0.2.1"); err != nil {
		t.Fatalf("the right password once the back-off is over: %v", err)
	}
	if err := login("alice", "guess", "192.0.2.1"); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("after a success the count starts again: %v, want unauthorized", err)
	}
	// One address guessing many accounts.
	for i := range 20 {
		if err := login(fmt.Sprintf("user%d", i), "guess", "198.51.100.7"); !fault.Is(err, fault.Unauthorized) {
			t.Fatalf("address failure %d: %v", i+1, err)
		}
	}
	if err := login("bob", "junction", "198.51.100.7"); !fault.Is(err, fault.RateLimited) {
		t.Errorf("bob from an address that failed twenty times: %v, want rate limited", err)
	}
	if err := login("bob", "junction", "192.0.2.9"); err != nil {
		t.Errorf("bob from elsewhere: %v", err)
	}
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	ctx := context.Background()
	first := newService(t, path)
	if _, err := first.CreateUser(ctx, user.NewUser{Username: "bob", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	tok, err := first.Login(ctx, "bob", "junction", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	second := newService(t, path)
	if _, err := auth.NewVerifierFor(user.VerifierScope("order-service"), auth.StaticKeySource(second.JWKS), nil).Verify(ctx, tok.AccessToken); err != nil {
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

// TestRotation: a new key is published at once and signs only after the
// publish delay; the old one signs until then, stays published until its
// last token has expired, then leaves; a second instance on the same
// database follows once it reads the keys again; only an administrator
// rotates.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func() time.Time { return clock }
	one, two := newServiceAt(t, path, at), newServiceAt(t, path, at)
	if _, err := one.CreateUser(ctx, user.NewUser{Username: "alice", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	kidOf := func(svc *user.Service) string {
		tok, err := svc.Login(ctx, "alice", "junction", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Kid string `json:"kid"`
		}
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[0])
		_ = json.Unmarshal(b, &h)
		return h.Kid
	}
	published := func(svc *user.Service) []string {
		var kids []string
		for _, k := range svc.JWKS().Keys {
			kids = append(kids, k.KeyID)
		}
		return kids
	}
	old := kidOf(one)
	if _, err := one.Rotate(ctx, auth.Principal{UserID: 1, Role: auth.RoleCustomer}, time.Minute); !fault.Is(err, fault.Forbidden) {
		t.Errorf("a customer's rotation: %v, want forbidden", err)
	}
	if _, err := one.Rotate(ctx, auth.Principal{UserID: 9, Role: auth.RoleAdmin}, time.Second); !fault.Is(err, fault.Invalid) {
		t.Errorf("a publish delay of 1 s: %v, want invalid", err)
	}
	nk, err := one.Rotate(ctx, auth.Principal{UserID: 9, Role: auth.RoleAdmin}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := two.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []*user.Service{one, two} {
		if kids := published(svc); !slices.Equal(kids, []string{old, nk.ID}) {
			t.Errorf("published right after the rotation: %v, want the old and the new", kids)
		}
		if k := kidOf(svc); k != old {
			t.Errorf("signing during the publish delay with %s, want the old key %s", k, old)
		}
	}
	clock = clock.Add(time.Minute)
	for _, svc := range []*user.Service{one, two} {
		if k := kidOf(svc); k != nk.ID {
			t.Errorf("signing after the delay with %s, want the new key %s", k, nk.ID)
		}
	}
	// The old key's last token was signed at activation; it expires 15
	// minutes later, and the key leaves the set after a margin.
	clock = clock.Add(auth.TokenExpiry)
	if kids := published(one); !slices.Equal(kids, []string{old, nk.ID}) {
		t.Errorf("when the old key's last token expires: %v, want both still", kids)
	}
	clock = clock.Add(time.Minute)
	if kids := published(one); !slices.Equal(kids, []string{nk.ID}) {
		t.Errorf("after the margin: %v, want only the new key", kids)
	}
}

// TestRefreshTokens: a refresh token trades once for the next; the one
// used, coming back, revokes the whole session, the newest token too;
// logout ends a session; an expired one is refused.
func TestRefreshTokens(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	svc := newServiceAt(t, filepath.Join(t.TempDir(), "users.db"), func() time.Time { return clock })
	if _, err := svc.CreateUser(ctx, user.NewUser{Username: "alice", Password: "junction", Role: auth.RoleCustomer}); err != nil {
		t.Fatal(err)
	}
	login, err := svc.Login(ctx, "alice", "junction", "192.0.2.1")
	if err != nil || login.RefreshToken == "" {
		t.Fatalf("login: %+v, %v", login, err)
	}
	second, err := svc.Refresh(ctx, login.RefreshToken)
	if err != nil || second.AccessToken == "" || second.RefreshToken == "" || second.RefreshToken == login.RefreshToken {
		t.Fatalf("refresh: %+v, %v", second, err)
	}
	third, err := svc.Refresh(ctx, second.RefreshToken)
	if err != nil {
		t.Fatalf("refresh again: %v", err)
	}
	// The first one, used already, comes back: the session ends.
	if _, err := svc.Refresh(ctx, login.RefreshToken); !errors.Is(err, user.ErrRefreshReused) || !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("a used refresh token again: %v, want unauthorized, reused", err)
	}
	if _, err := svc.Refresh(ctx, third.RefreshToken); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("the newest token of a revoked session: %v, want unauthorized", err)
	}
	// Another session is untouched, until its logout.
	other, _ := svc.Login(ctx, "alice", "junction", "192.0.2.1")
	if err := svc.Logout(ctx, other.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, other.RefreshToken); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("after logout: %v, want unauthorized", err)
	}
	if err := svc.Logout(ctx, "nothing of ours"); err != nil {
		t.Errorf("logging out an unknown token: %v, want nothing", err)
	}
	late, _ := svc.Login(ctx, "alice", "junction", "192.0.2.1")
	clock = clock.Add(user.RefreshTTL)
	if _, err := svc.Refresh(ctx, late.RefreshToken); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("an expired refresh token: %v, want unauthorized", err)
	}
	for _, bad := range []string{"", strings.Repeat("x", 200), "not-one"} {
		if _, err := svc.Refresh(ctx, bad); !fault.Is(err, fault.Unauthorized) {
			t.Errorf("refresh %.10q: %v, want unauthorized", bad, err)
		}
	}
}
