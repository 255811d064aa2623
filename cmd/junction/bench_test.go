package main

import (
	"errors"
	"testing"
)

// TestSearchMaxFindsTheEdge: against a shop that holds up to 77/s, the
// search from 40/s ends within its last bisection's width below 77.
func TestSearchMaxFindsTheEdge(t *testing.T) {
	const capacity = 77.0
	got, err := searchMax(40, 1, func(rate float64) (bool, error) { return rate <= capacity, nil })
	if err != nil {
		t.Fatal(err)
	}
	// 40 and 80 bracket it; six bisections leave 40/64 between the two.
	if got > capacity || got < capacity-40.0/64 {
		t.Errorf("searchMax = %.3f/s; want within %.3f below %.0f", got, 40.0/64, capacity)
	}
}

// TestSearchMaxTriesAFailingRateAgain: when every rate's first run fails
// (a noisy step), two tries still find the edge, each rate above it is
// run exactly twice, and one try ends the search at the first step.
func TestSearchMaxTriesAFailingRateAgain(t *testing.T) {
	const capacity = 77.0
	runs := map[float64]int{}
	noisy := func(rate float64) (bool, error) {
		runs[rate]++
		return runs[rate] > 1 && rate <= capacity, nil
	}
	got, err := searchMax(40, 2, noisy)
	if err != nil {
		t.Fatal(err)
	}
	if got > capacity || got < capacity-40.0/64 {
		t.Errorf("with two tries, searchMax = %.3f/s; want within %.3f below %.0f", got, 40.0/64, capacity)
	}
	for rate, n := range runs {
		if n != 2 {
			t.Errorf("%.3f/s was run %d times; want 2 (it failed once, then held or failed again)", rate, n)
		}
	}
	clear(runs)
	if got, err := searchMax(40, 1, noisy); err != nil || got != 0 {
		t.Errorf("with one try, searchMax = %.3f/s, %v; want 0: every first run fails", got, err)
	}
}

// TestSearchMaxStopsAtAnError: a run that cannot be made ends the search
// with its error, not with a rate.
func TestSearchMaxStopsAtAnError(t *testing.T) {
	boom := errors.New("the target is gone")
	calls := 0
	_, err := searchMax(40, 2, func(rate float64) (bool, error) {
		calls++
		if rate > 100 {
			return false, boom
		}
		return true, nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v; want %v", err, boom)
	}
	if calls != 3 {
		t.Errorf("%d runs; want 3 (40, 80, then 160 failing to run, not tried again)", calls)
	}
}
