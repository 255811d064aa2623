package bustest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// goroutines returns the stacks of every goroutine by id line
// ("goroutine 12 [select]:" → its id "12").
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		fields := strings.Fields(head)
		if len(fields) >= 2 && fields[0] == "goroutine" {
			out[fields[1]] = g
		}
	}
	return out
}

// checkLeaks returns a function that fails t if goroutines started since
// checkLeaks was called are still running (after up to 5 s of grace),
// except those whose stack mentions one of ignore (a broker running in the
// test's own process).
func checkLeaks(t *testing.T, ignore []string) func() {
	before := goroutines()
	return func() {
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); ; {
			leaked = leaked[:0]
			for id, stack := range goroutines() {
				if _, old := before[id]; old || strings.Contains(stack, "bustest.checkLeaks") || mentions(stack, ignore) {
					continue
				}
				leaked = append(leaked, stack)
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, s := range leaked {
			t.Errorf("goroutine left running after every subscription and connection closed:\n%s", s)
		}
	}
}

func mentions(stack string, subs []string) bool {
	for _, s := range subs {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
