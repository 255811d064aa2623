package loadgen_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junction-go/junction/internal/loadgen"
)

func TestRunsThePlannedNumberOfCalls(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served.Add(1) }))
	defer srv.Close()
	op := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 200, Duration: time.Second, Warmup: 250 * time.Millisecond, Concurrency: 4}, op)
	if err != nil {
		t.Fatal(err)
	}
	// 1.25 s at 200/s: 250 calls, the first 50 of them warm-up.
	if served.Load() != 250 || r.Planned != 200 || r.OK != 200 || r.Errors != 0 {
		t.Errorf("served %d, planned %d, ok %d, errors %d; want 250, 200, 200, 0", served.Load(), r.Planned, r.OK, r.Errors)
	}
	if r.Histogram().TotalCount() != 200 {
		t.Errorf("recorded %d latencies, want 200", r.Histogram().TotalCount())
	}
}

func TestCountsErrorsByKind(t *testing.T) {
	n := 0
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 100, Duration: 500 * time.Millisecond, Concurrency: 1}, func(context.Context) error {
		n++
		if n%2 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK+r.Errors != 50 || r.ErrorKind["boom"].Count != r.Errors || r.Errors != 25 {
		t.Errorf("ok %d errors %d kinds %v; want 25 and 25 boom", r.OK, r.Errors, r.ErrorKind)
	}
}

// TestMeasuresFromThePlannedStart: one stall of 400 ms with a single worker
// holds back every call planned during it. Measured from the planned start
// (as here), those calls show the wait; measured from when a worker picked
// them up, only the stalled call would. So far more than one call must be
// slower than 100 ms.
func TestMeasuresFromThePlannedStart(t *testing.T) {
	var calls atomic.Int64
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 100, Duration: time.Second, Concurrency: 1}, func(context.Context) error {
		if calls.Add(1) == 10 {
			time.Sleep(400 * time.Millisecond) // the stall under test, not a wait for a condition
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slow := r.Histogram().TotalCount() - countBelow(r, 100*time.Millisecond)
	if slow < 10 {
		t.Errorf("%d calls slower than 100 ms after a 400 ms stall at 100/s; want the ~30 queued behind it", slow)
	}
}

func countBelow(r loadgen.Result, d time.Duration) int64 {
	var n int64
	for _, b := range r.Histogram().Distribution() {
		if b.To <= d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

func TestRejectsNonsense(t *testing.T) {
	if _, err := loadgen.Run(context.Background(), loadgen.Config{}, func(context.Context) error { return nil }); err == nil {
		t.Error("Run with a zero config succeeded")
	}
}

func TestSVGIsWellFormed(t *testing.T) {
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 200, Duration: 2 * time.Second, Concurrency: 2}, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.SVG(&b, "test <run>"); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(b.String()))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			for _, a := range se.Attr {
				if a.Name.Local == "points" && strings.Count(a.Value, ",") >= 2 {
					polylines++
				}
			}
		}
	}
	if polylines != 2 {
		t.Errorf("plots with at least two points = %d, want 2 (p99 over time, percentiles)", polylines)
	}
}

// kinded is an error whose message names an id but whose kind does not.
type kinded struct{ id int64 }

func (k kinded) Error() string { return fmt.Sprintf("GET /orders/%d: 503", k.id) }
func (k kinded) Kind() string  { return "GET /orders/{id}: 503" }

// TestGoodputAndKinds: goodput counts only the calls done by the window's
// end (a call planned late in it that ends after it is achieved, not
// good), and failures that name their kind are counted under it, with
// their latency, whatever their messages say.
func TestGoodputAndKinds(t *testing.T) {
	start := time.Now()
	var n atomic.Int64
	var slow atomic.Int64
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 100, Duration: 500 * time.Millisecond, Concurrency: 64}, func(context.Context) error {
		i := n.Add(1)
		if i%5 == 0 {
			return kinded{id: i}
		}
		if time.Since(start) > 250*time.Millisecond {
			slow.Add(1)
			time.Sleep(400 * time.Millisecond) // ends after the window: the case under test
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(r.OK-slow.Load()) / 0.5; r.Goodput != want || slow.Load() == 0 {
		t.Errorf("goodput %.1f/s with %d of %d ok calls ending late; want %.1f/s", r.Goodput, slow.Load(), r.OK, want)
	}
	if r.Goodput >= r.Achieved {
		t.Errorf("goodput %.1f/s not below achieved %.1f/s", r.Goodput, r.Achieved)
	}
	k := r.ErrorKind["GET /orders/{id}: 503"]
	if len(r.ErrorKind) != 1 || k.Count != 10 || k.P99 <= 0 {
		t.Errorf("error kinds %v, want 10 under one kind with a latency", r.ErrorKind)
	}
}

// TestSeriesP99From: the calls planned in the first second take 300 ms,
// the rest nothing. That second's p99 and the p99 from it on show them;
// from the next second on the p99 is the fast calls', and each second's
// p99 from it on takes in every later second.
func TestSeriesP99From(t *testing.T) {
	start := time.Now()
	r, err := loadgen.Run(context.Background(), loadgen.Config{Rate: 100, Duration: 3 * time.Second, Concurrency: 64}, func(context.Context) error {
		if time.Since(start) < 900*time.Millisecond {
			time.Sleep(300 * time.Millisecond) // the slow work under test, not a wait for a condition
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Series) != 3 {
		t.Fatalf("series %+v, want 3 seconds", r.Series)
	}
	first, second, last := r.Series[0], r.Series[1], r.Series[2]
	if first.P99Ms < 300 || first.P99FromMs < 300 {
		t.Errorf("first second %+v: want its p99 and the p99 from it on at least 300 ms", first)
	}
	if second.P99FromMs >= 300 {
		t.Errorf("second second %+v: want the p99 from it on below 300 ms", second)
	}
	if last.P99FromMs != last.P99Ms {
		t.Errorf("last second %+v: want the p99 from it on to be its own", last)
	}
}
