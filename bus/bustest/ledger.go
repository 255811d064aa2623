package bustest

import (
	"fmt"
	"sort"
	"sync"
)

// Outcome of one publish attempt, as a client can know it.
type Outcome int

// Outcomes.
const (
	OK            Outcome = iota // the broker acknowledged it
	Failed                       // definitely not stored
	Indeterminate                // unknown: a timeout, a lost connection
)

// Ledger records a run's publish attempts and reads, and checks them the
// way Jepsen's queue checker does. It is safe for concurrent use.
type Ledger struct {
	mu        sync.Mutex
	attempted map[string]Outcome
	reads     map[string]int
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{attempted: map[string]Outcome{}, reads: map[string]int{}}
}

// Attempt records the outcome of publishing id.
func (l *Ledger) Attempt(id string, o Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempted[id] = o
}

// Read records one delivery of id.
func (l *Ledger) Read(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads[id]++
}

// Missing returns how many ids published OK have not been read yet.
func (l *Ledger) Missing() (missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, o := range l.attempted {
		if o == OK && l.reads[id] == 0 {
			missing++
		}
	}
	return missing
}

// Report is the checker's verdict; Lost and Unexpected must be 0.
type Report struct {
	Attempted, OK, Failed, Indeterminate int
	ReadUnique                           int
	Lost                                 int // acknowledged but never read
	Unexpected                           int // read but never attempted
	Recovered                            int // indeterminate (or failed) but read
	Duplicated                           int // read more than once (allowed)
	MaxReads                             int
	LostIDs                              []string // up to 10, for the failure message
}

// Check compares what was published with what was read.
func (l *Ledger) Check() Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r Report
	for id, o := range l.attempted {
		r.Attempted++
		switch o {
		case OK:
			r.OK++
			if l.reads[id] == 0 {
				r.Lost++
				if len(r.LostIDs) < 10 {
					r.LostIDs = append(r.LostIDs, id)
				}
			}
		case Failed:
			r.Failed++
			if l.reads[id] > 0 {
				r.Recovered++
			}
		case Indeterminate:
			r.Indeterminate++
			if l.reads[id] > 0 {
				r.Recovered++
			}
		}
	}
	for id, n := range l.reads {
		r.ReadUnique++
		if _, ok := l.attempted[id]; !ok {
			r.Unexpected++
		}
		if n > 1 {
			r.Duplicated++
		}
		r.MaxReads = max(r.MaxReads, n)
	}
	sort.Strings(r.LostIDs)
	return r
}

// String is the one-line summary a run prints.
func (r Report) String() string {
	return fmt.Sprintf("attempted %d: ok %d, failed %d, indeterminate %d; read %d unique; lost %d, unexpected %d, recovered %d, duplicated %d (max reads %d)",
		r.Attempted, r.OK, r.Failed, r.Indeterminate, r.ReadUnique, r.Lost, r.Unexpected, r.Recovered, r.Duplicated, r.MaxReads)
}
