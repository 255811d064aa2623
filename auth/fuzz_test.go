package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/junction-go/junction/auth"
)

// FuzzVerify: whatever the token, Verify does not panic, and what it
// accepts is a well-formed token of the key in one spelling: three
// segments of strict, unpadded base64url.
func FuzzVerify(f *testing.F) {
	k, err := auth.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	good, err := auth.NewSigner(k, time.Hour, clock).Sign(alice)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, seed := range []string{good, good + "=", parts[0] + "." + parts[1] + ".", "a.b.c", "", "..", good + "." + parts[2],
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."} {
		f.Add(seed)
	}
	v := auth.NewVerifier(keySet(k), clock)
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err != nil {
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted %q with %d segments", token, len(segs))
		}
		for _, s := range segs {
			b, err := base64.RawURLEncoding.Strict().DecodeString(s)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
				t.Fatalf("accepted %q: segment %q is not canonical base64url", token, s)
			}
		}
		if p.UserID < 1 {
			t.Fatalf("accepted %q as %+v", token, p)
		}
	})
}

// FuzzParseJWKS: any document parses or fails cleanly, and every key it
// yields is an Ed25519 public key.
func FuzzParseJWKS(f *testing.F) {
	k, err := auth.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	set, _ := json.Marshal(auth.JWKS{Keys: []auth.JWK{auth.PublicJWK(k)}})
	for _, seed := range []string{string(set), `{"keys":[]}`, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}`, `{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}`, `null`, `[]`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys, err := auth.ParseJWKS(raw)
		if err != nil {
			return
		}
		for kid, key := range keys {
			if len(key) != 32 {
				t.Fatalf("key %q is %d bytes, not an Ed25519 public key", kid, len(key))
			}
		}
	})
}

// FuzzTokenRoundTrip: any principal the signer signs verifies to itself;
// one too large for a verifier to read is refused at signing.
func FuzzTokenRoundTrip(f *testing.F) {
	k, err := auth.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(int64(7), "alice", true)
	f.Add(int64(1), "", false)
	f.Add(int64(1<<62), "名前\x00", true)
	signer, v := auth.NewSigner(k, time.Hour, clock), auth.NewVerifier(keySet(k), clock)
	f.Fuzz(func(t *testing.T, id int64, name string, admin bool) {
		if id < 1 {
			return
		}
		role := auth.RoleCustomer
		if admin {
			role = auth.RoleAdmin
		}
		tok, err := signer.Sign(auth.Principal{UserID: id, Username: name, Role: role})
		if errors.Is(err, auth.ErrTokenTooLarge) {
			return // refused at signing: no verifier would read it
		}
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("own token refused: %v", err)
		}
		// Names that are not valid UTF-8 come back with replacement runes.
		var want string
		b, _ := json.Marshal(name)
		_ = json.Unmarshal(b, &want)
		if p.UserID != id || p.Username != want || p.Role != role {
			t.Fatalf("signed %d %q %s, verified %+v", id, name, role, p)
		}
	})
}
