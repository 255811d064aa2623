package outbox

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/junction-go/junction/bus"
)

// FuzzRow: a message stored in an outbox row reads back with the same
// attributes, headers and body, whatever their text (one that is not valid
// UTF-8 is refused, never stored changed); and whatever a row holds (a
// hand-edited or damaged one), reading it errs or succeeds but never
// panics.
func FuzzRow(f *testing.F) {
	f.Add("m-1", "OrderCreated", "order-service", "7", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", []byte(`{"orderId":7}`), `{"ce-id":"x"}`)
	f.Add("", "", "", "", "", "", []byte(nil), `null`)
	f.Add("ü\x00", "t", "s", "k\n", "x-h", "\"quoted\"", []byte{0xff}, `{"ce-id":1}`)
	f.Add("a", "b", "c", "d", "e", "f", []byte("g"), `[`)
	f.Fuzz(func(t *testing.T, id, typ, source, key, hk, hv string, body []byte, raw string) {
		m := &bus.Message{ID: id, Type: typ, Source: source, Key: key, Headers: map[string]string{hk: hv}, Body: body,
			Time: time.UnixMilli(1764590400000).UTC()}
		headers, stored, err := encodeRow(m)
		if err != nil {
			valid := true
			for k, v := range bus.ToHeaders(m) {
				valid = valid && utf8.ValidString(k) && utf8.ValidString(v)
			}
			if valid {
				t.Fatalf("encodeRow(%+v): %v", m, err)
			}
			_, _ = decodeRow(raw, body)
			return
		}
		got, err := decodeRow(headers, stored)
		if err != nil {
			t.Fatalf("decodeRow(%q): %v", headers, err)
		}
		if got.ID != m.ID || got.Type != m.Type || got.Source != m.Source || got.Key != m.Key || !got.Time.Equal(m.Time) || string(got.Body) != string(m.Body) {
			t.Fatalf("%+v came back from its row as %+v", m, got)
		}
		if want := bus.FromHeaders(bus.ToHeaders(m), m.Body).Headers[hk]; got.Headers[hk] != want {
			t.Fatalf("header %q = %q after the row, %q through the binding alone", hk, got.Headers[hk], want)
		}
		_, _ = decodeRow(raw, body)
	})
}
