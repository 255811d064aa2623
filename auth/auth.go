// Package auth issues and verifies Junction's access tokens: short-lived JWTs
// signed with Ed25519 (EdDSA) keys that carry a key id, published as a JWKS.
//
// Verification follows RFC 8725: one allowed algorithm, a required expiry,
// issuer, audience and explicit type ("at+jwt", RFC 9068), and keys looked up
// only by kid in the verifier's own key set, never taken from the token.
package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/junction-go/junction/fault"
)

// Scope is who issues tokens and for whom: the iss and aud every token
// carries and every verifier requires. Another system over this package
// names its own (NewSignerFor, NewVerifierFor).
type Scope struct {
	// Audience is what a verifier requires in a token's aud: its own name.
	Issuer, Audience string
	// Roles are the roles a token may carry; a verifier refuses any other.
	Roles []string
	// Audiences, for a signer, are a token's aud: the services it is for
	// (RFC 8725bis: an audience per service), each of which requires its
	// own name; Audience alone when empty.
	Audiences []string
}

func (s Scope) audiences() jwt.ClaimStrings {
	if len(s.Audiences) > 0 {
		return s.Audiences
	}
	return jwt.ClaimStrings{s.Audience}
}

// DefaultScope is the shop's: NewSigner and NewVerifier use it.
var DefaultScope = Scope{Issuer: "junction", Audience: "junction", Roles: []string{RoleCustomer, RoleAdmin}}

// The token's type (RFC 9068) and default lifetime.
const (
	TokenType   = "at+jwt"
	TokenExpiry = 15 * time.Minute
)

// The shop's roles (DefaultScope.Roles).
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

// Principal is who a verified token speaks for.
type Principal struct {
	UserID   int64
	Username string
	Role     string
	// Expires is when the token that named it stops being accepted (its
	// expiry plus the leeway): a connection that outlives the request, a
	// WebSocket, ends then unless given a newer token.
	Expires time.Time
}

// IsAdmin reports whether p is an administrator.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

type claims struct {
	jwt.RegisteredClaims
	Username string `json:"name"`
	Role     string `json:"role"`
}

// Key is a signing key pair with its id.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Signer issues access tokens. It is safe for concurrent use.
type Signer struct {
	key   Key
	scope Scope
	ttl   time.Duration
	now   func() time.Time
}

// NewSigner returns a signer of DefaultScope that signs with key; ttl is
// the tokens' lifetime (TokenExpiry when 0); now is the clock (time.Now
// when nil).
func NewSigner(key Key, ttl time.Duration, now func() time.Time) *Signer {
	return NewSignerFor(DefaultScope, key, ttl, now)
}

// NewSignerFor is NewSigner for scope.
func NewSignerFor(scope Scope, key Key, ttl time.Duration, now func() time.Time) *Signer {
	if ttl <= 0 {
		ttl = TokenExpiry
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: key, scope: scope, ttl: ttl, now: now}
}

// TTL is the lifetime of the tokens s issues.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign returns a signed access token for p.
func (s *Signer) Sign(p Principal) (string, error) {
	now := s.now()
	var jti [12]byte
	fillRandom(jti[:])
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.scope.Issuer,
			Subject:   strconv.FormatInt(p.UserID, 10),
			Audience:  s.scope.audiences(),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Username: p.Username,
		Role:     p.Role,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = s.key.ID
	t.Header["typ"] = TokenType
	signed, err := t.SignedString(s.key.Private)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	if len(signed) > MaxTokenSize {
		return "", fmt.Errorf("sign token: %d bytes: %w", len(signed), ErrTokenTooLarge)
	}
	return signed, nil
}

// JWK is a public key in JWKS form (RFC 8037 for Ed25519).
type JWK struct {
	KeyType string `json:"kty"`
	Curve   string `json:"crv"`
	X       string `json:"x"`
	KeyID   string `json:"kid"`
	Alg     string `json:"alg"`
	Use     string `json:"use"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK returns the public half of k as a JWK.
func PublicJWK(k Key) JWK {
	pub := k.Private.Public().(ed25519.PublicKey)
	return JWK{KeyType: "OKP", Curve: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), KeyID: k.ID, Alg: "EdDSA", Use: "sig"}
}

// KeySource fetches the current JWKS document.
type KeySource func(ctx context.Context) ([]byte, error)

// Verifier checks access tokens against a key set it fetches from a
// KeySource, and fetches again (at most once per refresh interval) when a
// token names a key id it does not know, so keys can be rotated without
// downtime. It is safe for concurrent use.
type Verifier struct {
	scope   Scope
	source  KeySource
	now     func() time.Time
	refresh time.Duration

	// fetches: one fetch of the key set at a time, outside mu, which
	// every verification takes only briefly.
	fetches singleflight.Group

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time
	// failed is when the last fetch failed, with failure its error: no
	// new fetch before fetchBackoff has passed, so a stream of unknown
	// kids while user-service is down costs nothing.
	failed  time.Time
	failure error
	// verified remembers tokens that passed every check, by their exact
	// text, until they expire: a caller sends the same token with every
	// request, and an Ed25519 check each time is not free (figures in
	// docs/benchmarks.md). A token whose key has left the key set no
	// longer counts as verified.
	verified map[string]verifiedToken
}

type verifiedToken struct {
	principal Principal
	kid       string
	until     time.Time // expiry plus leeway
}

// maxVerified bounds the tokens a Verifier remembers; when full, the
// expired ones are dropped, and all of them if none has expired.
const maxVerified = 10000

// NewVerifier returns a verifier of DefaultScope over source; now is the
// clock (time.Now when nil).
func NewVerifier(source KeySource, now func() time.Time) *Verifier {
	return NewVerifierFor(DefaultScope, source, now)
}

// NewVerifierFor is NewVerifier for scope: it requires scope's issuer and
// audience.
func NewVerifierFor(scope Scope, source KeySource, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{scope: scope, source: source, now: now, refresh: 10 * time.Second}
}

// Verify checks token and returns its principal. Every failure is
// fault.Unauthorized, except a key set that cannot be fetched, which is
// fault.Unavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if len(token) > MaxTokenSize {
		return Principal{}, fault.New(fault.Unauthorized, "invalid access token: longer than %d bytes", MaxTokenSize)
	}
	if p, ok := v.remembered(token); ok {
		return p, nil
	}
	var c claims
	var kid string
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(v.scope.Issuer),
		jwt.WithAudience(v.scope.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(v.now),
		// One spelling per token: base64url with no stray bits or padding.
		jwt.WithStrictDecoding(),
	)
	var keyErr error
	_, err := parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != TokenType {
			return nil, fmt.Errorf("token type %q is not %q", typ, TokenType)
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no key id")
		}
		k, err := v.key(ctx, kid)
		keyErr = err
		return k, err
	})
	if err != nil {
		if fault.Is(keyErr, fault.Unavailable) {
			return Principal{}, keyErr
		}
		return Principal{}, fault.Wrap(fault.Unauthorized, err, "invalid access token")
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id < 1 {
		return Principal{}, fault.New(fault.Unauthorized, "invalid access token: bad subject")
	}
	if !slices.Contains(v.scope.Roles, c.Role) {
		return Principal{}, fault.New(fault.Unauthorized, "invalid access token: unknown role")
	}
	p := Principal{UserID: id, Username: c.Username, Role: c.Role, Expires: c.ExpiresAt.Add(leeway).UTC()}
	v.remember(token, p, kid, p.Expires)
	return p, nil
}

// MaxTokenSize is the longest access token a verifier reads; ours are
// about 400 bytes.
const MaxTokenSize = 4 << 10

// ErrTokenTooLarge is a principal whose token would be longer than
// MaxTokenSize: no verifier would read it, so it is not signed.
var ErrTokenTooLarge = fmt.Errorf("a token longer than %d bytes", MaxTokenSize)

// leeway is the clock skew allowed on a token's times.
const leeway = 5 * time.Second

func (v *Verifier) remembered(token string) (Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.verified[token]
	if !ok {
		return Principal{}, false
	}
	if _, known := v.keys[t.kid]; !known || !v.now().Before(t.until) {
		delete(v.verified, token)
		return Principal{}, false
	}
	return t.principal, true
}

func (v *Verifier) remember(token string, p Principal, kid string, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verified == nil {
		v.verified = map[string]verifiedToken{}
	}
	if len(v.verified) >= maxVerified {
		now := v.now()
		for k, t := range v.verified {
			if !now.Before(t.until) {
				delete(v.verified, k)
			}
		}
		if len(v.verified) >= maxVerified {
			clear(v.verified)
		}
	}
	v.verified[token] = verifiedToken{principal: p, kid: kid, until: until}
}

// fetchBackoff is how long after a failed fetch of the key set the next
// may start; a key id the set lacks waits for the refresh interval.
const fetchBackoff = time.Second

// key returns kid's key: from the set held, or from a new fetch of the
// set when kid is not in it and the last fetch is older than the refresh
// interval (and the last failure older than fetchBackoff). Fetches run
// one at a time and outside the lock, so tokens of known keys and
// remembered tokens never wait for one.
func (v *Verifier) key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	v.mu.Lock()
	if k, ok := v.keys[kid]; ok {
		v.mu.Unlock()
		return k, nil
	}
	now := v.now()
	if !v.fetched.IsZero() && now.Sub(v.fetched) < v.refresh {
		v.mu.Unlock()
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	if !v.failed.IsZero() && now.Sub(v.failed) < fetchBackoff {
		err := v.failure
		v.mu.Unlock()
		return nil, fault.Wrap(fault.Unavailable, err, "signing keys are unavailable")
	}
	v.mu.Unlock()
	done := v.fetches.DoChan("keys", func() (any, error) {
		// Not the first caller's deadline: the others share this fetch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return nil, v.fetch(fctx)
	})
	select {
	case r := <-done:
		if r.Err != nil {
			return nil, fault.Wrap(fault.Unavailable, r.Err, "signing keys are unavailable")
		}
	case <-ctx.Done():
		return nil, fault.Wrap(fault.Unavailable, ctx.Err(), "signing keys are unavailable")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// fetch reads the key set and keeps it, or notes the failure.
func (v *Verifier) fetch(ctx context.Context) error {
	raw, err := v.source(ctx)
	var keys map[string]ed25519.PublicKey
	if err == nil {
		keys, err = ParseJWKS(raw)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.failed, v.failure = v.now(), err
		return err
	}
	v.keys, v.fetched, v.failed, v.failure = keys, v.now(), time.Time{}, nil
	return nil
}

// ParseJWKS returns the Ed25519 signing keys of a JWKS document by key id;
// keys of other types or uses are ignored.
func ParseJWKS(raw []byte) (map[string]ed25519.PublicKey, error) {
	var set JWKS
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.KeyType != "OKP" || k.Curve != "Ed25519" || (k.Use != "" && k.Use != "sig") || k.KeyID == "" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("parse jwks: key %q is malformed", k.KeyID)
		}
		keys[k.KeyID] = ed25519.PublicKey(x)
	}
	return keys, nil
}

// HTTPKeySource fetches a JWKS document from url with client (which may
// resolve service names, see discovery.Transport). Documents over 64 KiB are
// refused.
func HTTPKeySource(client *http.Client, url string) KeySource {
	return func(ctx context.Context) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch jwks: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch jwks: %s", resp.Status)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
		if err != nil {
			return nil, fmt.Errorf("fetch jwks: %w", err)
		}
		if len(body) > 64<<10 {
			return nil, errors.New("fetch jwks: document too large")
		}
		return body, nil
	}
}

// StaticKeySource serves a key set the caller holds itself (the issuer
// verifying its own tokens).
func StaticKeySource(set func() JWKS) KeySource {
	return func(context.Context) ([]byte, error) { return json.Marshal(set()) }
}
