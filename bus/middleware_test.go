package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/junction-go/junction/bus"
)

func TestOnlyTypes(t *testing.T) {
	var got []string
	h := bus.OnlyTypes("OrderConfirmed")(func(_ context.Context, m *bus.Message) error {
		got = append(got, m.Type)
		return errors.New("handled")
	})
	for _, typ := range []string{"OrderCreated", "OrderConfirmed", "OrderShipped"} {
		err := h(context.Background(), &bus.Message{ID: typ, Type: typ})
		if want := typ == "OrderConfirmed"; (err != nil) != want {
			t.Errorf("%s: err = %v, want handled = %v", typ, err, want)
		}
	}
	if len(got) != 1 || got[0] != "OrderConfirmed" {
		t.Errorf("handled %v, want OrderConfirmed alone", got)
	}
}
