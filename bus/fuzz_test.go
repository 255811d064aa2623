package bus_test

import (
	"testing"
	"time"

	"github.com/junction-go/junction/bus"
)

// FuzzBinding: a message's attributes survive every binding's headers
// (what each broker carries) and back, whatever their text; and arbitrary
// headers read as a message without a panic.
func FuzzBinding(f *testing.F) {
	f.Add("id-1", "OrderCreated", "order-service", "7", "7", "cause", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", int64(1764590400000))
	f.Add("", "", "", "", "", "", "ce-id", "spoofed", int64(0))
	f.Add("ü\x00", "t", "s", "k\n", "c", "", "Ce-Type", "x", int64(-1))
	f.Fuzz(func(t *testing.T, id, typ, source, key, corr, cause, hk, hv string, ms int64) {
		m := &bus.Message{ID: id, Type: typ, Source: source, Key: key, CorrelationID: corr, CausationID: cause,
			Headers: map[string]string{hk: hv}, Body: []byte(`{}`)}
		if ms > 0 {
			m.Time = time.UnixMilli(ms % (1 << 45)).UTC()
		}
		for _, b := range []bus.Binding{bus.BindingHTTP, bus.BindingKafka, bus.BindingAMQP} {
			h := b.Headers(m)
			got := b.Message(h, m.Body)
			if got.ID != m.ID || got.Type != m.Type || got.Source != m.Source || got.Key != m.Key ||
				got.CorrelationID != m.CorrelationID || got.CausationID != m.CausationID || !got.Time.Equal(m.Time) {
				t.Fatalf("%q binding: %+v came back as %+v (headers %v)", b.Prefix, m, got, h)
			}
			// Whatever the headers, reading them does not panic.
			_ = b.Message(map[string]string{hk: hv, b.Prefix + hk: hv}, nil)
		}
	})
}
