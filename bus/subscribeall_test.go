package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/junction-go/junction/bus"
)

// failing subscribes until its budget runs out, then fails; it records
// what was closed.
type failing struct {
	left   int
	opened []*sub
}

type sub struct{ closed bool }

func (s *sub) Close() error { s.closed = true; return nil }

func (f *failing) Subscribe(_ context.Context, _, _ string, _ bus.Handler) (bus.Subscription, error) {
	if f.left == 0 {
		return nil, errors.New("broker says no")
	}
	f.left--
	s := &sub{}
	f.opened = append(f.opened, s)
	return s, nil
}

func (f *failing) Close() error { return nil }

func TestSubscribeAllClosesWhatItOpenedWhenOneFails(t *testing.T) {
	nop := func(context.Context, *bus.Message) error { return nil }
	handlers := map[string]bus.Handler{"a": nop, "b": nop, "c": nop}

	ok := &failing{left: 3}
	subs, err := bus.SubscribeAll(context.Background(), ok, "g", handlers)
	if err != nil || len(subs) != 3 {
		t.Fatalf("SubscribeAll = %d subscriptions, %v; want 3, nil", len(subs), err)
	}

	f := &failing{left: 2}
	if _, err := bus.SubscribeAll(context.Background(), f, "g", handlers); err == nil {
		t.Fatal("SubscribeAll with a failing subscribe = nil error")
	}
	for i, s := range f.opened {
		if !s.closed {
			t.Errorf("subscription %d left open after the failure", i)
		}
	}
}
