package stompbus_test

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/bus/bustest"
	"github.com/junction-go/junction/bus/stompbus"
)

// addr returns the ActiveMQ STOMP address to test against:
// JUNCTION_TEST_STOMP_ADDR, or 127.0.0.1:61623 as scripts/activemq starts
// it. Without a broker the test skips, or fails when JUNCTION_REQUIRE_ALL=1.
func addr(t *testing.T) string {
	a := os.Getenv("JUNCTION_TEST_STOMP_ADDR")
	if a == "" {
		a = "127.0.0.1:61623"
	}
	c, err := net.DialTimeout("tcp", a, time.Second)
	if err == nil {
		c.Close()
		return a
	}
	if os.Getenv("JUNCTION_REQUIRE_ALL") == "1" {
		t.Fatalf("ActiveMQ is required (JUNCTION_REQUIRE_ALL=1) but its STOMP port %s does not answer: %v", a, err)
	}
	t.Skipf("no ActiveMQ STOMP at %s (%v); run scripts/activemq start", a, err)
	return ""
}

func TestContract(t *testing.T) {
	a := addr(t)
	bustest.Run(t, bustest.Setup{
		Features: bustest.Features{SharesWork: true},
		// go-stomp v3.1.3's waitWithTimeout (subscription.go) starts a
		// goroutine on a sync.Cond for each unsubscribe; when the broker's
		// receipt times out (a slow ActiveMQ under -race), nothing ever
		// signals that Cond and the goroutine stays. It holds no
		// connection; it is the library's, not the adapter's.
		ClientLingers: []string{"go-stomp/stomp/v3.waitWithTimeout"},
		New: func(t *testing.T) (bus.Publisher, bus.Subscriber) {
			pub, err := stompbus.Connect(stompbus.Config{Addr: a})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := stompbus.Connect(stompbus.Config{Addr: a})
			if err != nil {
				t.Fatal(err)
			}
			return pub, sub
		},
		Wire: &bustest.Wire{Binding: bus.BindingSTOMP, Listen: func(t *testing.T, topic string) func() map[string]string {
			conn, err := stomp.Dial("tcp", a)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Disconnect() })
			sub, err := conn.Subscribe(stompbus.TopicDestination(topic), stomp.AckAuto)
			if err != nil {
				t.Fatal(err)
			}
			// The broker handles a connection's frames in order: once a
			// later send is receipted, the subscription is in place.
			if err := conn.Send("/topic/bustest-sync", "text/plain", []byte("sync"), stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err)
			}
			return func() map[string]string {
				select {
				case m := <-sub.C:
					if m.Err != nil {
						t.Fatalf("read %s with go-stomp: %v", topic, m.Err)
					}
					h := map[string]string{}
					for i := range m.Header.Len() {
						k, v := m.Header.GetAt(i)
						h[k] = v
					}
					return h
				case <-time.After(10 * time.Second):
					t.Fatalf("read %s with go-stomp: nothing within 10s", topic)
					return nil
				}
			}
		}},
	})
}
