package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/internal/user"
	"github.com/junction-go/junction/internal/user/store"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/sqldb/sqldbtest"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newStore(t *testing.T, db *sqldb.DB) *store.Store {
	t.Helper()
	st, err := store.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUsers: a user is found by name and id as made; a taken name is a
// conflict; a missing one is not found.
func TestUsers(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		u, err := st.CreateUser(ctx, user.User{Username: "alice", DisplayName: "Alice", Role: "customer", PasswordHash: []byte{0, 1, 255}, CreatedAt: t0})
		if err != nil || u.ID == 0 {
			t.Fatalf("CreateUser = %+v, %v", u, err)
		}
		for _, got := range []func() (user.User, error){
			func() (user.User, error) { return st.UserByName(ctx, "alice") },
			func() (user.User, error) { return st.UserByID(ctx, u.ID) },
		} {
			g, err := got()
			if err != nil || g.ID != u.ID || g.DisplayName != "Alice" || !bytes.Equal(g.PasswordHash, u.PasswordHash) || !g.CreatedAt.Equal(t0) {
				t.Errorf("lookup = %+v, %v; want %+v", g, err, u)
			}
		}
		if _, err := st.CreateUser(ctx, user.User{Username: "alice", DisplayName: "Other", Role: "customer", PasswordHash: []byte{1}, CreatedAt: t0}); !fault.Is(err, fault.Conflict) {
			t.Errorf("a taken username = %v, want a conflict", err)
		}
		if _, err := st.UserByName(ctx, "nobody"); !fault.Is(err, fault.NotFound) {
			t.Errorf("a missing user = %v, want not found", err)
		}
	})
}

// TestSigningKeys: keys come back in the order they were added, whole; a
// rotation retires every key still staying and adds the next.
func TestSigningKeys(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		key := func(id string, b byte) user.SigningKey {
			return user.SigningKey{Key: auth.Key{ID: id, Private: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))}, Created: t0, Activates: t0}
		}
		if err := st.AddSigningKey(ctx, key("k1", 1)); err != nil {
			t.Fatal(err)
		}
		if err := st.Rotate(ctx, key("k2", 2), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		keys, err := st.SigningKeys(ctx)
		if err != nil || len(keys) != 2 {
			t.Fatalf("SigningKeys = %d keys, %v; want 2", len(keys), err)
		}
		if keys[0].ID != "k1" || !keys[0].Retires.Equal(t0.Add(time.Hour)) || keys[1].ID != "k2" || !keys[1].Retires.IsZero() {
			t.Errorf("keys = %s retires %v, %s retires %v; want k1 retiring in an hour, then k2 staying", keys[0].ID, keys[0].Retires, keys[1].ID, keys[1].Retires)
		}
		if !keys[1].Private.Equal(key("k2", 2).Private) {
			t.Error("k2's private key did not come back whole")
		}
	})
}

// TestRefreshTokens: a token is used once for the next of its family; used
// again, it revokes the family.
func TestRefreshTokens(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := newStore(t, db)
		u, err := st.CreateUser(ctx, user.User{Username: "bob", DisplayName: "Bob", Role: "customer", PasswordHash: []byte{1}, CreatedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		first := user.Refresh{Hash: []byte("h1"), Family: "f1", UserID: u.ID, Created: t0, Expires: t0.Add(time.Hour)}
		if err := st.AddRefresh(ctx, first); err != nil {
			t.Fatal(err)
		}
		next := func(r user.Refresh) (user.Refresh, error) {
			return user.Refresh{Hash: []byte("h2"), Family: r.Family, UserID: r.UserID, Created: t0.Add(time.Minute), Expires: t0.Add(time.Hour)}, nil
		}
		got, err := st.UseRefresh(ctx, first.Hash, next)
		if err != nil || got.Family != "f1" || got.UserID != u.ID || !got.Expires.Equal(first.Expires) {
			t.Fatalf("UseRefresh = %+v, %v", got, err)
		}
		if _, err := st.UseRefresh(ctx, first.Hash, next); !errors.Is(err, user.ErrRefreshReused) {
			t.Fatalf("a used token again = %v, want reused", err)
		}
		stop := errors.New("stop")
		_, err = st.UseRefresh(ctx, []byte("h2"), func(r user.Refresh) (user.Refresh, error) {
			if r.Revoked.IsZero() {
				t.Errorf("the family's next token after a reuse = %+v, want it revoked", r)
			}
			return user.Refresh{}, stop
		})
		if !errors.Is(err, stop) {
			t.Errorf("UseRefresh of the next token = %v, want the callback's error", err)
		}
		if _, err := st.UseRefresh(ctx, []byte("missing"), next); !fault.Is(err, fault.NotFound) {
			t.Errorf("an unknown token = %v, want not found", err)
		}
	})
}
