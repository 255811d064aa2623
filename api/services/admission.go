package services

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Order admission between the gateway and order-service. order-service
// decides how many orders may be between acceptance and verdict; the
// gateway, told after every answer how much room is left, refuses the new
// orders that would find none itself, a hop sooner, and tells
// order-service how many it refused, which counts them as refused by it.
const (
	// RoomHeader is on order-service's answers: a Room as its String.
	RoomHeader = "X-Order-Room"
	// RefusedHeader is on the gateway's requests to order-service: how
	// many new orders the gateway refused for want of room since it last
	// said.
	RefusedHeader = "X-Orders-Refused"
)

// Room is order admission's room as an answer leaves order-service.
type Room struct {
	// Free is how many more orders it would admit; Placing how many of
	// those admitted are still being placed (their answers not gone);
	// Ends how many a second reached their verdict in the last second.
	Free, Placing int
	Ends          float64
}

// String is RoomHeader's value: "<free> <placing> <ends>".
func (r Room) String() string {
	return strconv.Itoa(r.Free) + " " + strconv.Itoa(r.Placing) + " " + strconv.FormatFloat(r.Ends, 'f', 1, 64)
}

// ParseRoom reads RoomHeader's value.
func ParseRoom(v string) (Room, error) {
	f := strings.Split(v, " ")
	if len(f) != 3 {
		return Room{}, fmt.Errorf("%s %q: want <free> <placing> <ends a second>", RoomHeader, v)
	}
	var r Room
	var err error
	if r.Free, err = strconv.Atoi(f[0]); err != nil || r.Free < 0 {
		return Room{}, fmt.Errorf("%s %q: free: not a count", RoomHeader, v)
	}
	if r.Placing, err = strconv.Atoi(f[1]); err != nil || r.Placing < 0 {
		return Room{}, fmt.Errorf("%s %q: placing: not a count", RoomHeader, v)
	}
	if r.Ends, err = strconv.ParseFloat(f[2], 64); err != nil || !(r.Ends >= 0) || math.IsInf(r.Ends, 1) {
		return Room{}, fmt.Errorf("%s %q: ends: not a rate", RoomHeader, v)
	}
	return r, nil
}
