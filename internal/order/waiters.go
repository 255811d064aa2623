package order

import (
	"sync"

	"github.com/junction-go/junction/saga"
)

// Waiters lets requests wait for an order's saga to end in this process
// (the long poll of GET /api/orders/{id}?wait=): the saga engine calls
// Ended, and every waiter of that order is woken. A saga ended by another
// replica wakes nobody here; waiters poll as well. It is safe for
// concurrent use; the zero value is not usable (NewWaiters).
type Waiters struct {
	mu sync.Mutex
	by map[int64][]chan struct{}
}

// NewWaiters returns an empty set of waiters.
func NewWaiters() *Waiters { return &Waiters{by: map[int64][]chan struct{}{}} }

// Wait returns a channel closed when a saga of order id next ends here,
// and cancel, to call when no longer waiting.
func (w *Waiters) Wait(id int64) (ended <-chan struct{}, cancel func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.by[id] = append(w.by[id], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		ws := w.by[id]
		for i, c := range ws {
			if c == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(w.by, id)
		} else {
			w.by[id] = ws
		}
	}
}

// Ended wakes the waiters of the order in's saga is about: the saga
// engine's Config.Ended.
func (w *Waiters) Ended(in *saga.Instance) {
	id, err := SagaOrder(in)
	if err != nil {
		return
	}
	w.mu.Lock()
	ws := w.by[id]
	delete(w.by, id)
	w.mu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}
