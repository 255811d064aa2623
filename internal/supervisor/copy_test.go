package supervisor

import (
	"bytes"
	"strings"
	"testing"
)

// countingWriter counts the writes it is given.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

// TestCopyLinesPrefixesEveryLineInBlocks: each line a child writes comes
// out whole with its prefix, lines that arrive together go out in one
// write, a line longer than the buffer comes out in prefixed pieces with
// nothing lost, and a last line without a newline gets one.
func TestCopyLinesPrefixesEveryLineInBlocks(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	var in strings.Builder
	for i := range 1000 {
		in.WriteString("line ")
		in.WriteString(strings.Repeat("y", i%50))
		in.WriteString("\n")
	}
	in.WriteString(long + "\n")
	in.WriteString("the end")
	out := &countingWriter{}
	c := &child{spec: Spec{Name: "svc"}, sup: &Supervisor{Out: out}, width: 4}
	c.copyLines(strings.NewReader(in.String()))

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var rest strings.Builder
	for _, l := range lines {
		body, ok := strings.CutPrefix(l, "svc | ")
		if !ok {
			t.Fatalf("line without its prefix: %.40q", l)
		}
		rest.WriteString(body)
	}
	if lines[len(lines)-1] != "svc | the end" {
		t.Errorf("last line = %.40q, want the unterminated one, prefixed", lines[len(lines)-1])
	}
	if want := strings.ReplaceAll(in.String(), "\n", ""); rest.String() != want {
		t.Errorf("the lines' text came out changed: %d bytes, want %d", rest.Len(), len(want))
	}
	if out.writes > 20 {
		t.Errorf("%d writes for %d lines read in a few blocks, want a write per block", out.writes, len(lines))
	}
}
