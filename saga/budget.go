package saga

import (
	"sync"
	"time"
)

// resendWindow is how far back the resend budget looks, in whole seconds.
const resendWindow = 10

// resendBudget rations an engine's resends the way Finagle's retry budget
// rations retries: over the last resendWindow seconds, resends may be at
// most floor per second plus share of the first sends. Steps that time out
// together (a participant down, or too slow under load) then add a bounded
// share to the load on it instead of multiplying it. It is safe for
// concurrent use.
type resendBudget struct {
	share, floor float64
	off          bool

	mu     sync.Mutex
	second [resendWindow]int64 // the Unix second each slot counts
	first  [resendWindow]int
	again  [resendWindow]int
}

func newResendBudget(share, floor float64) *resendBudget {
	return &resendBudget{share: share, floor: floor, off: share < 0}
}

// slot returns the index counting now's second, emptied when it last
// counted an older one.
func (b *resendBudget) slot(now time.Time) int {
	s := now.Unix()
	i := int(s % resendWindow)
	if i < 0 {
		i += resendWindow
	}
	if b.second[i] != s {
		b.second[i], b.first[i], b.again[i] = s, 0, 0
	}
	return i
}

// sent counts a first send.
func (b *resendBudget) sent(now time.Time) {
	if b.off {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.first[b.slot(now)]++
}

// resend reports whether a resend fits in the budget now, counting it
// when it does.
func (b *resendBudget) resend(now time.Time) bool {
	if b.off {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.slot(now)
	from := now.Unix() - resendWindow + 1
	first, again := 0, 0
	for j := range resendWindow {
		if b.second[j] >= from {
			first += b.first[j]
			again += b.again[j]
		}
	}
	if float64(again) >= b.floor*resendWindow+b.share*float64(first) {
		return false
	}
	b.again[i]++
	return true
}
