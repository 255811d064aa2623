// Package loadgen drives an operation at a constant arrival rate (open
// loop) and measures each call's latency from the moment it was planned to
// start, not from when a worker got to it, so a stalled system cannot hide
// its queueing delay (no coordinated omission). Latencies go into an
// HdrHistogram.
package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op is one call of the operation under load. ctx carries the run's
// deadline.
type Op func(ctx context.Context) error

// Config is a run.
type Config struct {
	// Rate is the planned calls per second.
	Rate float64
	// Duration is how long calls are measured, after Warmup.
	Duration time.Duration
	// Warmup runs at Rate before measuring; its calls are not recorded.
	Warmup time.Duration
	// Concurrency is the most calls in flight at once; planned calls wait
	// (and their wait counts) when all are busy.
	Concurrency int
	// Timeout bounds each call; 10 s when zero.
	Timeout time.Duration
	// Progress, when set, is called about once a second with the calls
	// done and planned so far.
	Progress func(done, planned int64)
}

// Result is what a run measured.
type Result struct {
	Planned  int64         `json:"planned"`
	OK       int64         `json:"ok"`
	Errors   int64         `json:"errors"`
	Elapsed  time.Duration `json:"elapsedNs"`
	Achieved float64       `json:"achievedPerSecond"`
	// Goodput is the calls that succeeded within the measured window (planned
	// in it and done by its end), per second of it: what a system under
	// more load than it can take still gets done in time.
	Goodput   float64              `json:"goodputPerSecond"`
	Latency   Percentiles          `json:"latencyMs"`
	ErrorKind map[string]KindStats `json:"errorKinds,omitempty"`
	// Series is the per-second p99 and completed count, for plots.
	Series []Second `json:"series"`
	hist   *hdrhistogram.Histogram
}

// Second is one second of a run: its calls' p99, and the p99 of its calls
// and every later second's together (what a run that has recovered by
// this second shows from here on, where one second's p99 of a few dozen
// calls is its slowest call).
type Second struct {
	At        int     `json:"at"`
	Count     int64   `json:"count"`
	P99Ms     float64 `json:"p99Ms"`
	P99FromMs float64 `json:"p99FromMs"`
}

// KindStats are the failed calls of one kind (Kind of an error that has
// one, like "POST /api/orders: 503 overloaded", else its text) and their
// latency from the planned start, so a refusal's speed shows beside its
// count.
type KindStats struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
}

// Percentiles of latency in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Histogram returns the run's latency histogram (microseconds).
func (r Result) Histogram() *hdrhistogram.Histogram { return r.hist }

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
}

// Run drives op as cfg says and returns what it measured. It stops early,
// with what it has, when ctx is done.
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Concurrency <= 0 {
		return Result{}, errors.New("loadgen: rate, duration and concurrency must be positive")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := int64(float64(cfg.Warmup+cfg.Duration) * cfg.Rate / float64(time.Second))
	warm := int64(float64(cfg.Warmup) * cfg.Rate / float64(time.Second))

	type task struct {
		i       int64
		planned time.Time
	}
	tasks := make(chan task, 4096)
	var (
		mu      sync.Mutex
		hist    = newHist()
		seconds = map[int]*hdrhistogram.Histogram{}
		kinds   = map[string]*hdrhistogram.Histogram{}
		good    int64
		ok      atomic.Int64
		failed  atomic.Int64
		done    atomic.Int64
	)
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	measureTo := measureFrom.Add(cfg.Duration)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				err := op(cctx)
				cancel()
				end := time.Now()
				done.Add(1)
				if t.i < warm {
					continue
				}
				lat := end.Sub(t.planned)
				us := max(lat.Microseconds(), 1)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					k := errorKind(err)
					if kinds[k] == nil {
						kinds[k] = newHist()
					}
					_ = kinds[k].RecordValue(us)
				} else {
					ok.Add(1)
					if !end.After(measureTo) {
						good++
					}
					_ = hist.RecordValue(us)
					sec := int(t.planned.Sub(measureFrom) / time.Second)
					h := seconds[sec]
					if h == nil {
						h = newHist()
						seconds[sec] = h
					}
					_ = h.RecordValue(us)
				}
				mu.Unlock()
			}
		}()
	}
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case now := <-t.C:
					cfg.Progress(done.Load(), min(total, int64(now.Sub(start)/interval)))
				}
			}
		}()
	}
	var planned int64
schedule:
	for i := int64(0); i < total; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				break schedule
			case <-time.After(d):
			}
		}
		select {
		case tasks <- task{i: i, planned: at}:
			planned = i + 1
		case <-ctx.Done():
			break schedule
		}
	}
	close(tasks)
	wg.Wait()
	close(stopProgress)
	elapsed := time.Since(measureFrom)

	ms := func(us int64) float64 { return float64(us) / 1000 }
	r := Result{
		Planned: max(planned-warm, 0), OK: ok.Load(), Errors: failed.Load(), Elapsed: elapsed,
		hist: hist,
	}
	if len(kinds) > 0 {
		r.ErrorKind = map[string]KindStats{}
		for k, h := range kinds {
			r.ErrorKind[k] = KindStats{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99))}
		}
	}
	if cfg.Duration > 0 {
		r.Achieved = float64(r.OK) / min(elapsed, cfg.Duration+cfg.Timeout).Seconds()
		r.Goodput = float64(good) / cfg.Duration.Seconds()
	}
	r.Latency = Percentiles{P50: ms(hist.ValueAtQuantile(50)), P90: ms(hist.ValueAtQuantile(90)), P99: ms(hist.ValueAtQuantile(99)), P999: ms(hist.ValueAtQuantile(99.9)), Max: ms(hist.Max())}
	for s := 0; s <= int(cfg.Duration/time.Second); s++ {
		if h := seconds[s]; h != nil {
			r.Series = append(r.Series, Second{At: s, Count: h.TotalCount(), P99Ms: ms(h.ValueAtQuantile(99))})
		}
	}
	from := newHist()
	for i := len(r.Series) - 1; i >= 0; i-- {
		from.Merge(seconds[r.Series[i].At])
		r.Series[i].P99FromMs = ms(from.ValueAtQuantile(99))
	}
	return r, ctx.Err()
}

// Kinder is an error that names its kind, so failures of one sort are
// counted together whatever ids their messages carry.
type Kinder interface {
	error
	Kind() string
}

func errorKind(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if k, ok := errors.AsType[Kinder](err); ok {
		return k.Kind()
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// Summary is a text summary of r.
func (r Result) Summary(name string, rate float64) string {
	s := fmt.Sprintf("%s: planned %d at %.0f/s, ok %d, errors %d, achieved %.1f/s, goodput %.1f/s (ok within the window)\n  latency from planned start: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms",
		name, r.Planned, rate, r.OK, r.Errors, r.Achieved, r.Goodput, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	kinds := slices.SortedFunc(maps.Keys(r.ErrorKind), func(a, b string) int { return cmp.Compare(r.ErrorKind[b].Count, r.ErrorKind[a].Count) })
	for i, k := range kinds {
		if i == 0 {
			s += "\n  errors by kind:"
		}
		if i == 20 {
			s += fmt.Sprintf("\n    ... and %d kinds more", len(kinds)-i)
			break
		}
		st := r.ErrorKind[k]
		s += fmt.Sprintf("\n    %6d  %s (p50 %.1f ms, p99 %.1f ms)", st.Count, k, st.P50, st.P99)
	}
	return s
}
