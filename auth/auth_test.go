package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

func newKey(t *testing.T) auth.Key {
	t.Helper()
	k, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keySet(keys ...auth.Key) auth.KeySource {
	return auth.StaticKeySource(func() auth.JWKS {
		var set auth.JWKS
		for _, k := range keys {
			set.Keys = append(set.Keys, auth.PublicJWK(k))
		}
		return set
	})
}

var alice = auth.Principal{UserID: 7, Username: "alice", Role: auth.RoleCustomer}

// verifiedAs is p as a verifier names it from a token signed at now that
// lives ttl: accepted until its expiry plus the 5 s leeway.
func verifiedAs(p auth.Principal, ttl time.Duration) auth.Principal {
	p.Expires = now.Add(ttl + 5*time.Second)
	return p
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := newKey(t)
	tok, err := auth.NewSigner(k, 0, clock).Sign(alice)
	if err != nil {
		t.Fatal(err)
	}
	got, err := auth.NewVerifier(keySet(k), clock).Verify(context.Background(), tok)
	if want := verifiedAs(alice, 15*time.Minute); err != nil || got != want {
		t.Fatalf("Verify(signed token) = %+v, %v; want %+v", got, err, want)
	}
}

// sign makes a token with arbitrary header and claims, for the attacks.
func sign(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": auth.DefaultScope.Issuer, "aud": []string{auth.DefaultScope.Audience}, "sub": "7",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"name": "alice", "role": auth.RoleCustomer,
	}
}

func with(c jwt.MapClaims, key string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, val := range c {
		out[k] = val
	}
	if v == nil {
		delete(out, key)
	} else {
		out[key] = v
	}
	return out
}

// TestVerifyRejects covers RFC 8725's threats: every token here must be
// refused as unauthorized.
func TestVerifyRejects(t *testing.T) {
	k := newKey(t)
	other := newKey(t)
	hdr := map[string]any{"kid": k.ID, "typ": auth.TokenType}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	pub := k.Private.Public().(ed25519.PublicKey)

	tests := []struct {
		name  string
		token string
	}{
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, goodClaims())},
		{"HS256 with the public key as secret", sign(t, jwt.SigningMethodHS256, []byte(pub), hdr, goodClaims())},
		{"HS256 with a PEM as secret", sign(t, jwt.SigningMethodHS256, pubPEM, hdr, goodClaims())},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, hdr, goodClaims())},
		{"signed by an unknown key under a known kid", sign(t, jwt.SigningMethodEdDSA, other.Private, hdr, goodClaims())},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, other.Private, map[string]any{"kid": other.ID, "typ": auth.TokenType}, goodClaims())},
		{"no kid", sign(t, jwt.SigningMethodEdDSA, k.Private, map[string]any{"typ": auth.TokenType}, goodClaims())},
		{"wrong typ", sign(t, jwt.SigningMethodEdDSA, k.Private, map[string]any{"kid": k.ID, "typ": "JWT"}, goodClaims())},
		{"expired", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "exp", now.Add(-time.Minute).Unix()))},
		{"no exp", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "exp", nil))},
		{"not yet valid", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "nbf", now.Add(time.Hour).Unix()))},
		{"issued in the future", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "iat", now.Add(time.Hour).Unix()))},
		{"other issuer", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "iss", "evil"))},
		{"other audience", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "aud", []string{"payments"}))},
		{"no audience", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "aud", nil))},
		{"bad subject", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "sub", "alice"))},
		{"unknown role", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "role", "root"))},
		{"garbage", "not.a.token"},
		{"empty", ""},
		{"another spelling of the signature (a padding bit set)", respell(t, sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, goodClaims()))},
		{"padded base64", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, goodClaims()) + "=="},
		{"oversize", sign(t, jwt.SigningMethodEdDSA, k.Private, hdr, with(goodClaims(), "pad", strings.Repeat("x", auth.MaxTokenSize)))},
	}
	v := auth.NewVerifier(keySet(k), clock)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if !fault.Is(err, fault.Unauthorized) {
				t.Errorf("Verify = %+v, %v; want an unauthorized error", p, err)
			}
		})
	}
}

// respell sets the last, unused bit of the signature's base64url: a
// lenient decoder reads the same signature from it.
func respell(t *testing.T, token string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, token[len(token)-1])
	if i < 0 {
		t.Fatalf("token %q does not end in base64url", token)
	}
	return token[:len(token)-1] + string(alphabet[i^1])
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestVerifierFetchesRotatedKeys: a token signed with a key published after
// the verifier's last fetch is accepted once the key set is fetched again.
func TestVerifierFetchesRotatedKeys(t *testing.T) {
	first, second := newKey(t), newKey(t)
	published := []auth.Key{first}
	fetches := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches++
		var set auth.JWKS
		for _, k := range published {
			set.Keys = append(set.Keys, auth.PublicJWK(k))
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	t0 := now
	v := auth.NewVerifier(auth.HTTPKeySource(srv.Client(), srv.URL), func() time.Time { return t0 })

	tok1, _ := auth.NewSigner(first, 0, clock).Sign(alice)
	if _, err := v.Verify(context.Background(), tok1); err != nil {
		t.Fatalf("Verify(first key) = %v", err)
	}
	published = append(published, second)
	tok2, _ := auth.NewSigner(second, 0, clock).Sign(alice)
	// Within the refresh interval an unknown kid does not cause a fetch.
	if _, err := v.Verify(context.Background(), tok2); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("Verify(new key) right after a fetch = %v, want unauthorized", err)
	}
	t0 = t0.Add(11 * time.Second)
	if _, err := v.Verify(context.Background(), tok2); err != nil {
		t.Fatalf("Verify(new key) after the refresh interval = %v, want ok", err)
	}
	if fetches != 2 {
		t.Errorf("fetches = %d, want 2", fetches)
	}
}

func TestVerifierKeySourceDownIsUnavailable(t *testing.T) {
	k := newKey(t)
	tok, _ := auth.NewSigner(k, 0, clock).Sign(alice)
	v := auth.NewVerifier(func(context.Context) ([]byte, error) { return nil, errors.New("connection refused") }, clock)
	if _, err := v.Verify(context.Background(), tok); !fault.Is(err, fault.Unavailable) {
		t.Errorf("Verify with no key source = %v, want unavailable", err)
	}
}

func TestRequire(t *testing.T) {
	k := newKey(t)
	tok, _ := auth.NewSigner(k, 0, clock).Sign(alice)
	h := auth.Require(auth.NewVerifier(keySet(k), clock), discardLogger())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		if p != verifiedAs(alice, 15*time.Minute) || auth.TokenFromContext(r.Context()) != tok {
			t.Errorf("principal in handler = %+v", p)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	tests := []struct {
		header string
		want   int
	}{
		{"Bearer " + tok, http.StatusNoContent},
		{"bearer " + tok, http.StatusNoContent},
		{"", http.StatusUnauthorized},
		{"Basic YWxpY2U6anVuY3Rpb24=", http.StatusUnauthorized},
		{"Bearer " + tok + "x", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("Authorization %.20q: status = %d, want %d", tt.header, rec.Code, tt.want)
		}
		if tt.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %.20q: no WWW-Authenticate", tt.header)
		}
	}
	// Two Authorization headers: which one counts is ambiguous, so none.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Add("Authorization", "Bearer "+tok)
	req.Header.Add("Authorization", "Bearer "+tok)
	if h.ServeHTTP(rec, req); rec.Code != http.StatusBadRequest {
		t.Errorf("two Authorization headers: status = %d, want 400", rec.Code)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestVerifierRemembersATokenOnlyWhileItIsValid: a verified token is
// remembered, and remembering it changes no verdict: another token (one
// byte changed) is checked in full, the token stops counting at its expiry
// plus the leeway, and when its key leaves the key set.
func TestVerifierRemembersATokenOnlyWhileItIsValid(t *testing.T) {
	first, second := newKey(t), newKey(t)
	published := []auth.Key{first}
	source := func(ctx context.Context) ([]byte, error) {
		var set auth.JWKS
		for _, k := range published {
			set.Keys = append(set.Keys, auth.PublicJWK(k))
		}
		return json.Marshal(set)
	}
	t0 := now
	v := auth.NewVerifier(source, func() time.Time { return t0 })
	ctx := context.Background()
	tok, err := auth.NewSigner(first, time.Minute, clock).Sign(alice)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got, err := v.Verify(ctx, tok); err != nil || got != verifiedAs(alice, time.Minute) {
			t.Fatalf("Verify #%d = %+v, %v; want %+v", i+1, got, err, verifiedAs(alice, time.Minute))
		}
	}
	tampered := []byte(tok)
	tampered[len(tampered)-2] ^= 1
	if _, err := v.Verify(ctx, string(tampered)); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("Verify(token with a changed signature) after the token was verified = %v, want unauthorized", err)
	}

	t0 = now.Add(time.Minute + 4*time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("Verify within the leeway after expiry = %v, want ok", err)
	}
	t0 = now.Add(time.Minute + 5*time.Second)
	if _, err := v.Verify(ctx, tok); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("Verify at expiry plus leeway = %v, want unauthorized", err)
	}

	// The key is rotated out: a token of the new key makes the verifier
	// fetch the set again, and the old key's token no longer counts.
	t0 = now
	fresh, _ := auth.NewSigner(first, time.Hour, clock).Sign(alice)
	if _, err := v.Verify(ctx, fresh); err != nil {
		t.Fatalf("Verify(fresh token) = %v", err)
	}
	published = []auth.Key{second}
	t0 = now.Add(11 * time.Second)
	byNew, _ := auth.NewSigner(second, time.Hour, clock).Sign(alice)
	if _, err := v.Verify(ctx, byNew); err != nil {
		t.Fatalf("Verify(token of the new key) = %v", err)
	}
	if _, err := v.Verify(ctx, fresh); !fault.Is(err, fault.Unauthorized) {
		t.Errorf("Verify(token of a withdrawn key) = %v, want unauthorized", err)
	}
}

// BenchmarkVerify: a token checked in full (signature, claims) beside the
// same kind of token verified before, same run.
func BenchmarkVerify(b *testing.B) {
	k, err := auth.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, 1000)
	for i := range tokens {
		p := alice
		p.UserID = int64(i + 1)
		if tokens[i], err = auth.NewSigner(k, time.Hour, clock).Sign(p); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("full", func(b *testing.B) {
		var v *auth.Verifier
		for i := range b.N {
			if i%len(tokens) == 0 {
				v = auth.NewVerifier(keySet(k), clock) // nothing remembered
			}
			if _, err := v.Verify(ctx, tokens[i%len(tokens)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
	})
	b.Run("remembered", func(b *testing.B) {
		v := auth.NewVerifier(keySet(k), clock)
		for i := range b.N {
			if _, err := v.Verify(ctx, tokens[i%len(tokens)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
	})
}

// TestScopesDoNotMix: a token of one scope is refused by a verifier of
// another, and accepted by one of its own.
func TestScopesDoNotMix(t *testing.T) {
	k := newKey(t)
	billing := auth.Scope{Issuer: "billing", Audience: "billing-api", Roles: []string{"clerk"}}
	tok, err := auth.NewSignerFor(billing, k, 0, nil).Sign(auth.Principal{UserID: 7, Username: "ann", Role: "clerk"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewVerifier(keySet(k), nil).Verify(context.Background(), tok); err == nil {
		t.Error("the shop's verifier accepted a billing token")
	}
	p, err := auth.NewVerifierFor(billing, keySet(k), nil).Verify(context.Background(), tok)
	if err != nil || p.UserID != 7 || p.Role != "clerk" {
		t.Errorf("billing verifier = %+v, %v; want user 7, clerk", p, err)
	}
}

// TestVerifierDoesNotStallOnAFetch: while the key source hangs, fetching
// for a stream of tokens with unknown kids, tokens of the known key (new
// and remembered) verify without waiting for it; and once a fetch has
// failed, forged kids do not start another for a while.
func TestVerifierDoesNotStallOnAFetch(t *testing.T) {
	known, forger := newKey(t), newKey(t)
	var mu sync.Mutex
	clock := now
	tick := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	at := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	hang, fetching := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	set, _ := json.Marshal(auth.JWKS{Keys: []auth.JWK{auth.PublicJWK(known)}})
	source := func(ctx context.Context) ([]byte, error) {
		switch calls.Add(1) {
		case 1:
			return set, nil
		case 2:
			close(fetching)
		}
		select { // every later fetch hangs until the test ends
		case <-hang:
		case <-ctx.Done():
		}
		return nil, errors.New("key source away")
	}
	v := auth.NewVerifier(source, at)
	sign := func(k auth.Key, p auth.Principal) string {
		tok, err := auth.NewSigner(k, time.Hour, at).Sign(p)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	remembered := sign(known, alice)
	if _, err := v.Verify(ctx, remembered); err != nil {
		t.Fatal(err)
	}
	tick(time.Minute) // past the refresh interval: an unknown kid fetches
	forged := make(chan error, 20)
	for range 20 {
		go func() {
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := v.Verify(fctx, sign(forger, alice))
			forged <- err
		}()
	}
	<-fetching // the second call of the source has begun, and hangs
	done := make(chan error, 1)
	go func() {
		for i := range 100 {
			if _, err := v.Verify(ctx, remembered); err != nil {
				done <- err
				return
			}
			if _, err := v.Verify(ctx, sign(known, auth.Principal{UserID: int64(100 + i), Username: "u", Role: auth.RoleCustomer})); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a token of the known key, while the fetch hangs: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tokens of the known key waited for the hanging fetch")
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the key source was called %d times for 20 unknown kids at once, want 2 (one fetch at a time)", n)
	}
	close(hang)
	for range 20 {
		if err := <-forged; !fault.Is(err, fault.Unavailable) {
			t.Errorf("a forged kid while the key source is away: %v, want unavailable", err)
		}
	}
	// Just failed: more forged kids are refused at once, with no fetch.
	for range 50 {
		if _, err := v.Verify(ctx, sign(forger, alice)); !fault.Is(err, fault.Unavailable) {
			t.Errorf("a forged kid after the failure: %v, want unavailable", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the key source was called %d times, want 2: none within the back-off after a failure", n)
	}
}
