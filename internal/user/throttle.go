package user

import (
	"sync"
	"time"
)

// The rules of failed logins, per account and per client address:
//
//	failures in a row     what happens to the next login attempt
//	fewer than free       it is tried
//	free or more          it waits out a back-off: base after the free ones,
//	                      doubling with each further failure, at most max;
//	                      an attempt during it is refused (429, Retry-After)
//	                      without checking the password
//	a success             the count starts again (the account's; an
//	                      address's count ages out after max)
//
// An account's limit stops guessing one password; an address's, guessing
// many accounts' from one place. Neither locks an account for long: the
// back-off is at most max, so a stranger's failures cost its owner minutes,
// not the account.
const (
	accountFree = 5
	addressFree = 20
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
	// throttleCap bounds the remembered keys; past it, the stale ones are
	// forgotten.
	throttleCap = 100_000
)

// throttle counts failed logins by key (an account or an address).
type throttle struct {
	free int
	now  func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	until time.Time // no attempt before
	last  time.Time
}

func newThrottle(free int, now func() time.Time) *throttle {
	return &throttle{free: free, now: now, keys: map[string]*failures{}}
}

// wait returns how long key must wait before its next attempt (0: now).
func (t *throttle) wait(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.keys[key]
	if !ok {
		return 0
	}
	now := t.now()
	if f.stale(now) {
		delete(t.keys, key) // quiet long enough: a fresh start
		return 0
	}
	return max(0, f.until.Sub(now))
}

// failed counts a failure of key and starts its back-off once past free.
func (t *throttle) failed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f, ok := t.keys[key]
	if !ok {
		if len(t.keys) >= throttleCap {
			for k, v := range t.keys {
				if v.stale(now) {
					delete(t.keys, k)
				}
			}
		}
		f = &failures{}
		t.keys[key] = f
	}
	f.n++
	f.last = now
	if over := f.n - t.free; over >= 0 {
		d := backoffBase << min(over, 20)
		f.until = now.Add(min(d, backoffMax))
	}
}

// stale reports whether f's last failure is older than the longest
// back-off (so its back-off is over too): it counts no more.
func (f *failures) stale(now time.Time) bool { return now.Sub(f.last) > backoffMax }

// succeeded forgets key's failures.
func (t *throttle) succeeded(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}
