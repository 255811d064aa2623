package order_test

import (
	"encoding/json"
	"testing"

	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/saga"
)

// sagaOf returns a saga instance about order id, as the engine has it.
func sagaOf(t *testing.T, id, name string, orderID int64) *saga.Instance {
	t.Helper()
	data, err := json.Marshal(order.SagaData(order.Order{ID: orderID, UserID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	return &saga.Instance{ID: id, Saga: name, Data: data}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWaitersWakeTheOrdersWaiters: the end of order 7's saga (either
// saga) wakes every waiter of order 7 and nobody else; a waiter that gave
// up is not woken and leaves nothing behind.
func TestWaitersWakeTheOrdersWaiters(t *testing.T) {
	w := order.NewWaiters()
	a, cancelA := w.Wait(7)
	defer cancelA()
	b, cancelB := w.Wait(7)
	defer cancelB()
	other, cancelOther := w.Wait(8)
	defer cancelOther()
	gone, cancelGone := w.Wait(7)
	cancelGone()

	w.Ended(sagaOf(t, "7", order.SagaPlaceOrder, 7))
	if !closed(a) || !closed(b) {
		t.Error("the waiters of order 7 were not woken by its saga's end")
	}
	if closed(other) {
		t.Error("the waiter of order 8 was woken by order 7's saga")
	}
	if closed(gone) {
		t.Error("a waiter that gave up was woken")
	}
	again, cancelAgain := w.Wait(7)
	defer cancelAgain()
	w.Ended(sagaOf(t, order.CancelSagaID(7), order.SagaCancelOrder, 7))
	if !closed(again) {
		t.Error("the end of order 7's cancel saga did not wake its waiter")
	}
	w.Ended(&saga.Instance{ID: "not-an-order", Data: []byte(`{}`)}) // ignored
}
