package services_test

import (
	"testing"

	"github.com/junction-go/junction/api/services"
)

func TestRoomHeader(t *testing.T) {
	for _, r := range []services.Room{{}, {Free: 17, Placing: 3, Ends: 52.5}, {Free: 10000, Ends: 0.1}} {
		v := r.String()
		got, err := services.ParseRoom(v)
		if err != nil || got != r {
			t.Errorf("ParseRoom(%q) = %+v, %v; want %+v", v, got, err, r)
		}
	}
	for _, v := range []string{"", "3", "3 1", "x 1 1.0", "3 x 1", "-1 0 1", "3 -1 1", "3 0 x", "3 0 -1", "3 0 NaN", "3 0 +Inf", "3 1 2 4"} {
		if r, err := services.ParseRoom(v); err == nil {
			t.Errorf("ParseRoom(%q) = %+v; want an error", v, r)
		}
	}
}
