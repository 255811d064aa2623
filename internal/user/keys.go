package user

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// The life of a signing key (the rules of a rotation):
//
//	made       published in the key set at once, signing nothing yet
//	activates  after the publish delay: the newest active key signs every
//	           new token; verifiers that meet its kid fetch the set, which
//	           has held it for at least the delay, longer than their
//	           refresh interval, so no token of it is ever refused
//	retires    the key it replaced leaves the set once the last token it
//	           signed has expired (activation + token lifetime + leeway)
//
// A rotation is the new key and the old ones' retirement, in one
// transaction; every instance reads the keys again every few seconds.

// SigningKey is a key with its life.
type SigningKey struct {
	auth.Key
	Created, Activates time.Time
	// Retires is zero while the key stays.
	Retires time.Time
}

// MinPublishDelay is the least time a new key is published before it
// signs: more than a verifier's refresh interval (10 s).
const MinPublishDelay = 15 * time.Second

// retireMargin is kept after the last token of a retiring key expires,
// beyond the verifiers' leeway.
const retireMargin = 30 * time.Second

// published reports whether k is in the key set at t.
func (k SigningKey) published(t time.Time) bool { return k.Retires.IsZero() || t.Before(k.Retires) }

// signingKey returns the newest key that is active at t.
func signingKey(keys []SigningKey, t time.Time) (SigningKey, bool) {
	for i := len(keys) - 1; i >= 0; i-- {
		if k := keys[i]; !t.Before(k.Activates) && k.published(t) {
			return k, true
		}
	}
	return SigningKey{}, false
}

// Rotate makes a new signing key, published now and signing from
// publishDelay on, and retires the keys it replaces once their tokens have
// expired. Only an administrator may.
func (s *Service) Rotate(ctx context.Context, caller auth.Principal, publishDelay time.Duration) (SigningKey, error) {
	if !caller.IsAdmin() {
		return SigningKey{}, fault.New(fault.Forbidden, "only an administrator rotates keys")
	}
	if publishDelay < MinPublishDelay {
		return SigningKey{}, fault.New(fault.Invalid, "a new key is published at least %v before it signs", MinPublishDelay)
	}
	k, err := auth.NewKey()
	if err != nil {
		return SigningKey{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	nk := SigningKey{Key: k, Created: now, Activates: now.Add(publishDelay)}
	if err := s.store.Rotate(ctx, nk, nk.Activates.Add(cmp.Or(s.ttl, auth.TokenExpiry)+retireMargin)); err != nil {
		return SigningKey{}, fmt.Errorf("rotate: %w", err)
	}
	return nk, s.Reload(ctx)
}

// Keys returns the signing keys, oldest first, to an administrator.
func (s *Service) Keys(caller auth.Principal) ([]SigningKey, error) {
	if !caller.IsAdmin() {
		return nil, fault.New(fault.Forbidden, "only an administrator sees the keys")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]SigningKey(nil), s.keys...), nil
}

// Signing reports which key signs now.
func (s *Service) Signing() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, _ := signingKey(s.keys, s.now())
	return k.ID
}

// Reload reads the keys again (another instance may have rotated them).
func (s *Service) Reload(ctx context.Context) error {
	keys, err := s.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
	return nil
}

// RunKeys reads the keys again every interval until ctx ends.
func (s *Service) RunKeys(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = s.Reload(ctx) // the keys held stay until a read succeeds
		}
	}
}
