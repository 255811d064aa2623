package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// The rules of refresh tokens (rotating, with reuse detection, as in the
// OAuth 2.0 Security BCP):
//
//	login               a new family, with its first refresh token
//	refresh with one    a new access token and the family's next refresh
//	never used before   token; the one given is used up
//	refresh with one    the token leaked (or a client retried a stale one):
//	used already        the whole family is revoked, the newest token too,
//	                    and the call is refused
//	logout              the family is revoked
//	expired, revoked,   refused (401)
//	unknown
//
// Only the SHA-256 of a token is stored. Access tokens already issued stay
// valid until they expire (15 minutes): a verifier does not ask.

// RefreshTTL is how long a refresh token may be used.
const RefreshTTL = 24 * time.Hour

// Refresh is a stored refresh token.
type Refresh struct {
	Hash    []byte
	Family  string
	UserID  int64
	Created time.Time
	Expires time.Time
	Used    time.Time // zero while unused
	Revoked time.Time // zero while not revoked
}

// ErrRefreshReused is a used refresh token presented again; the store has
// revoked its family.
var ErrRefreshReused = errors.New("refresh token reused")

// RefreshStore keeps refresh tokens.
type RefreshStore interface {
	AddRefresh(ctx context.Context, r Refresh) error
	// UseRefresh, in one transaction, reads the token of hash, has next
	// check it and make its successor, marks it used and adds the
	// successor. A used one revokes its family (committed) and fails with
	// ErrRefreshReused; an unknown one is fault.NotFound.
	UseRefresh(ctx context.Context, hash []byte, next func(Refresh) (Refresh, error)) (Refresh, error)
	// RevokeFamily revokes the family of the token of hash.
	RevokeFamily(ctx context.Context, hash []byte, at time.Time) error
}

// newRefresh returns a new refresh token of family (a new family when
// "") for user, and its row.
func (s *Service) newRefresh(family string, user int64) (string, Refresh, error) {
	text := rand.Text() + rand.Text() // 2×26 base32 characters, 256 bits
	if family == "" {
		family = rand.Text() // its own randomness: nothing of a token is stored
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	return text, Refresh{Hash: hashRefresh(text), Family: family, UserID: user, Created: now, Expires: now.Add(RefreshTTL)}, nil
}

func hashRefresh(text string) []byte {
	h := sha256.Sum256([]byte(text))
	return h[:]
}

var refusedRefresh = fault.New(fault.Unauthorized, "the refresh token is not valid; log in again")

// Refresh trades a refresh token for a new access token and the next
// refresh token.
func (s *Service) Refresh(ctx context.Context, token string) (Token, error) {
	if token == "" || len(token) > 128 {
		return Token{}, refusedRefresh
	}
	var nextText string
	used, err := s.store.UseRefresh(ctx, hashRefresh(token), func(r Refresh) (Refresh, error) {
		if !r.Revoked.IsZero() || !s.now().Before(r.Expires) {
			return Refresh{}, refusedRefresh
		}
		text, next, err := s.newRefresh(r.Family, r.UserID)
		nextText = text
		return next, err
	})
	switch {
	case errors.Is(err, ErrRefreshReused):
		return Token{}, fault.Wrap(fault.Unauthorized, err, "this refresh token was used already: every session it belongs to is ended; log in again")
	case fault.Is(err, fault.NotFound):
		return Token{}, refusedRefresh
	case err != nil:
		return Token{}, err
	}
	u, err := s.store.UserByID(ctx, used.UserID)
	if err != nil {
		return Token{}, fmt.Errorf("refresh: %w", err)
	}
	tok, err := s.issue(u)
	if err != nil {
		return Token{}, err
	}
	tok.RefreshToken = nextText
	return tok, nil
}

// Logout ends the session of a refresh token (its family). An unknown
// token is no error: the session is over either way.
func (s *Service) Logout(ctx context.Context, token string) error {
	if token == "" || len(token) > 128 {
		return nil
	}
	err := s.store.RevokeFamily(ctx, hashRefresh(token), s.now())
	if fault.Is(err, fault.NotFound) {
		return nil
	}
	return err
}

// issue signs an access token for u with the newest active key.
func (s *Service) issue(u User) (Token, error) {
	s.mu.RLock()
	key, ok := signingKey(s.keys, s.now())
	s.mu.RUnlock()
	if !ok {
		return Token{}, fault.New(fault.Unavailable, "no signing key is active")
	}
	signer := auth.NewSignerFor(TokenScope(), key.Key, s.ttl, s.now)
	tok, err := signer.Sign(auth.Principal{UserID: u.ID, Username: u.Username, Role: u.Role})
	if err != nil {
		return Token{}, fmt.Errorf("sign: %w", err)
	}
	return Token{AccessToken: tok, ExpiresIn: signer.TTL()}, nil
}
