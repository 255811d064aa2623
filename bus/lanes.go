package bus

import (
	"context"
	"sync"
)

// Lanes runs a handler on a fixed number of goroutines, each handling its
// messages one at a time, with every message of one key on the same lane:
// messages with the same key are handled in the order they were given,
// others in parallel. Adapters use it to keep the per-key order promise.
type Lanes struct {
	lanes []chan laneItem
	wg    sync.WaitGroup
}

type laneItem struct {
	m    *Message
	done func(error)
}

// NewLanes starts n lanes (at least 1) that call h with ctx, and each
// message's done with h's result. Each lane holds up to depth waiting
// messages; Dispatch blocks beyond that.
func NewLanes(ctx context.Context, n, depth int, h Handler) *Lanes {
	n = max(n, 1)
	l := &Lanes{lanes: make([]chan laneItem, n)}
	for i := range l.lanes {
		ch := make(chan laneItem, depth)
		l.lanes[i] = ch
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for it := range ch {
				it.done(h(ctx, it.m))
			}
		}()
	}
	return l
}

// Dispatch queues m on its key's lane. Messages without a key are spread by
// id. It must not be called after Close.
func (l *Lanes) Dispatch(m *Message, done func(error)) {
	k := m.Key
	if k == "" {
		k = m.ID
	}
	l.lanes[fnv32a(k)%uint32(len(l.lanes))] <- laneItem{m: m, done: done}
}

// fnv32a is FNV-1a of s, without the allocations of hash/fnv: it runs once
// per delivered message.
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Close lets the lanes finish what they hold and waits for them.
func (l *Lanes) Close() {
	for _, ch := range l.lanes {
		close(ch)
	}
	l.wg.Wait()
}
