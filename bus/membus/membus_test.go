package membus_test

import (
	"testing"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/membus"
)

func TestContract(t *testing.T) {
	// One bus stands for the broker; every "connection" is a view of it
	// whose Close does nothing, and the bus closes at the end.
	b := membus.New()
	t.Cleanup(func() { _ = b.Close() })
	bustest.Run(t, bustest.Setup{
		Features: bustest.Features{SharesWork: true, Replay: true},
		New: func(t *testing.T) (bus.Publisher, bus.Subscriber) {
			return view{b}, view{b}
		},
	})
}

type view struct{ *membus.Bus }

func (view) Close() error { return nil }
