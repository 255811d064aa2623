package msg

import (
	"testing"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/payment"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		typ, body string
		want      payment.Command
		permanent bool
	}{
		{events.CmdAuthorizePayment, `{"orderId":7,"userId":1,"amount":900,"currency":"EUR","card":"4242"}`, payment.Command{Kind: payment.Authorize, Key: "k", OrderID: 7, Amount: 900, Currency: "EUR", Card: "4242"}, false},
		{events.CmdVoidPayment, `{"orderId":7}`, payment.Command{Kind: payment.Void, Key: "k", OrderID: 7}, false},
		{events.CmdCapturePayment, `{"orderId":7}`, payment.Command{Kind: payment.Capture, Key: "k", OrderID: 7}, false},
		{events.CmdAuthorizePayment, `{"orderId":7,"amount":0,"currency":"EUR"}`, payment.Command{}, true},
		{events.CmdAuthorizePayment, `{"orderId":7,"amount":900}`, payment.Command{}, true},
		{events.CmdVoidPayment, `{"orderId":0}`, payment.Command{}, true},
		{events.CmdVoidPayment, `not json`, payment.Command{}, true},
		{"RefundEverything", `{"orderId":7}`, payment.Command{}, true},
	}
	for _, tt := range tests {
		got, err := decode(&bus.Message{Type: tt.typ, Body: []byte(tt.body)}, "k")
		if tt.permanent {
			if !bus.IsPermanent(err) {
				t.Errorf("decode(%s %s) = %+v, %v; want a permanent failure", tt.typ, tt.body, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("decode(%s %s) = %+v, %v; want %+v", tt.typ, tt.body, got, err, tt.want)
		}
	}
}
