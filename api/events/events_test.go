package events_test

import (
	"testing"

	"github.com/junction-go/junction/api/events"
)

func TestOrderKey(t *testing.T) {
	if id, err := events.OrderKey("42"); err != nil || id != 42 {
		t.Errorf("OrderKey(42) = %d, %v", id, err)
	}
	for _, bad := range []string{"", "0", "-3", "x7", "7-cancel"} {
		if _, err := events.OrderKey(bad); err == nil {
			t.Errorf("OrderKey(%q) = nil error, want one", bad)
		}
	}
}
