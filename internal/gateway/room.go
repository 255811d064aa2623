package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junction-go/junction/api/services"
)

// orderRoom is the gateway's picture of order admission's room in each
// order-service instance: every answer of one says how many more orders it
// would take, how many it is placing and how many a second are ending
// (services.RoomHeader). A new
// order that would find no room anywhere is refused here, without the hop
// each way a refusal by order-service costs on a busy machine, and
// order-service is told (services.RefusedHeader) so that it counts it as
// refused: its time bound holds while orders are refused.
//
// Between two answers the room is reckoned: what the last answer said,
// plus the orders that have ended since at the pace it gave (endsLag
// behind it), less the new
// orders on their way to it then (sent on, not answered, and not among
// those it said it was placing) and those sent on since (the two shared
// evenly among the instances heard from). A reckoning that errs is mended
// by the next answer: an order sent on to a shop with no room is refused
// there and its answer says so. An instance not heard from for roomFresh
// is left out, and with none left every order goes on. Several gateways
// each reckon alone: what they send on together beyond the room is
// refused by order-service, as without this.
type orderRoom struct {
	mu      sync.Mutex
	reports map[string]roomReport // by instance address
	// sent are the new orders sent on, ever; pending those of them not
	// answered yet.
	sent, pending int64
	// refused are the new orders refused here for want of room that
	// order-service has not been told of yet.
	refused atomic.Int64
}

// roomReport is what one answer said, when it came, how many new orders
// had been sent on then, and how many were on their way.
type roomReport struct {
	services.Room
	at              time.Time
	sentAt, transit int64
}

// roomFresh is how long an instance's last answer is reckoned from;
// endsLag how many orders the reckoning of those ended since lags behind
// their pace: orders end in bursts, and an answer that comes as one ends
// (a long poll of its verdict) says so sooner than the pace would.
const (
	roomFresh = 2 * time.Second
	endsLag   = 2
)

func newOrderRoom() *orderRoom { return &orderRoom{reports: map[string]roomReport{}} }

// heard takes the room an answer of instance reported (newOrder: the
// answer to one, still pending here); an answer that reports none, or not
// in its form, changes nothing.
func (o *orderRoom) heard(instance string, h http.Header, newOrder bool, now time.Time) {
	v := h.Get(services.RoomHeader)
	if v == "" {
		return
	}
	r, err := services.ParseRoom(v)
	if err != nil {
		return
	}
	o.mu.Lock()
	transit := o.pending - int64(r.Placing)
	if newOrder {
		transit-- // this one arrived
	}
	o.reports[instance] = roomReport{Room: r, at: now, sentAt: o.sent, transit: max(0, transit)}
	o.mu.Unlock()
}

// has tells whether a new order would find room, by the reckoning.
func (o *orderRoom) has(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, r := range o.reports {
		if now.Sub(r.at) > roomFresh {
			delete(o.reports, k)
		}
	}
	if len(o.reports) == 0 {
		return true
	}
	share := 1 / float64(len(o.reports))
	var room float64
	for _, r := range o.reports {
		ended := max(0, r.Ends*now.Sub(r.at).Seconds()-endsLag)
		room += float64(r.Free) + ended - float64(o.sent-r.sentAt+r.transit)*share
	}
	return room >= 1
}

// sentOn counts a new order sent on to order-service, answered counts its
// answer.
func (o *orderRoom) sentOn() {
	o.mu.Lock()
	o.sent++
	o.pending++
	o.mu.Unlock()
}

func (o *orderRoom) answered() {
	o.mu.Lock()
	o.pending--
	o.mu.Unlock()
}

// refusedHere counts a new order refused for want of room.
func (o *orderRoom) refusedHere() { o.refused.Add(1) }

// tell puts on a request to order-service how many new orders were
// refused here since the last one said; a client's own count is dropped.
func (o *orderRoom) tell(h http.Header) {
	h.Del(services.RefusedHeader)
	if n := o.refused.Swap(0); n > 0 {
		h.Set(services.RefusedHeader, strconv.FormatInt(n, 10))
	}
}
