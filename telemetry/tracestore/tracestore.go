// Package tracestore keeps the recent traces of a whole system in memory,
// fed over OTLP/HTTP by every process, and serves them as JSON: a trace by
// its id, the traces of an order by its id, the latest traces. It is
// bounded: past MaxSpans the oldest traces go first.
//
// It is what `junction up` runs when no collector is configured, so a trace
// can be read on one machine without Jaeger; with one (--otlp), it also
// forwards what it receives there.
package tracestore

import (
	"cmp"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Span is one span as the API shows it.
type Span struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId,omitempty"`
	Name         string `json:"name"`
	// Kind is server, client, producer, consumer or internal.
	Kind     string    `json:"kind"`
	Service  string    `json:"service"`
	Instance string    `json:"instance,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// Status is "error" or "" (not an error).
	Status        string         `json:"status,omitempty"`
	StatusMessage string         `json:"statusMessage,omitempty"`
	Attributes    map[string]any `json:"attributes,omitempty"`
	Events        []Event        `json:"events,omitempty"`
	Links         []Link         `json:"links,omitempty"`
}

// Event is a span's event.
type Event struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Link points at another span.
type Link struct {
	TraceID string `json:"traceId"`
	SpanID  string `json:"spanId"`
}

// Trace is every span of one trace the store holds, by start time.
type Trace struct {
	Summary
	Spans []Span `json:"spans"`
}

// Summary describes a trace without its spans.
type Summary struct {
	TraceID string `json:"traceId"`
	// Root is the name of the span without a parent ("" while it has not
	// arrived), and RootService its service.
	Root        string    `json:"root"`
	RootService string    `json:"rootService,omitempty"`
	Services    []string  `json:"services"`
	Spans       int       `json:"spanCount"`
	Errors      int       `json:"errorCount"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// Orphans counts spans whose parent is not in the trace (yet: spans
	// of one trace arrive from many processes, in any order).
	Orphans  int     `json:"orphanCount"`
	OrderIDs []int64 `json:"orderIds,omitempty"`
}

// Config bounds a store; the zero value is usable.
type Config struct {
	// MaxSpans is the most spans kept in all; 100,000 when zero.
	MaxSpans int
	// MaxSpansPerTrace is the most kept of one trace (the rest are
	// counted as dropped); 5,000 when zero.
	MaxSpansPerTrace int
}

// Store holds the traces. It is safe for concurrent use.
type Store struct {
	cfg Config

	mu      sync.Mutex
	traces  map[string]*entry // by trace id (its 16 bytes)
	order   []string          // trace ids by arrival, oldest first (a queue)
	byOrder map[int64][]string
	spans   int
	dropped int64
}

// entry is one trace: its spans as they arrived (converted to Span only
// when read, so taking them in costs little) and the orders they touch.
type entry struct {
	spans  []raw
	orders []int64
}

type raw struct {
	span              *tracepb.Span
	service, instance string
}

// New returns an empty store.
func New(cfg Config) *Store {
	if cfg.MaxSpans <= 0 {
		cfg.MaxSpans = 100_000
	}
	if cfg.MaxSpansPerTrace <= 0 {
		cfg.MaxSpansPerTrace = 5_000
	}
	return &Store{cfg: cfg, traces: map[string]*entry{}, byOrder: map[int64][]string{}}
}

// OrderAttribute is the span attribute by which the store finds an order's
// traces.
const OrderAttribute = "order.id"

// Add stores the spans of an OTLP export request's resource spans.
func (s *Store) Add(rss []*tracepb.ResourceSpans) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range rss {
		var service, inst string
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.GetKey() {
			case "service.name":
				service = kv.GetValue().GetStringValue()
			case "service.instance.id":
				inst = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.add(raw{span: sp, service: service, instance: inst})
			}
		}
	}
	for s.spans > s.cfg.MaxSpans && len(s.order) > 0 {
		s.evictOldest()
	}
}

func (s *Store) add(r raw) {
	tid := string(r.span.GetTraceId())
	e := s.traces[tid]
	if e == nil {
		e = &entry{}
		s.traces[tid] = e
		s.order = append(s.order, tid)
	}
	if len(e.spans) >= s.cfg.MaxSpansPerTrace {
		s.dropped++
		return
	}
	e.spans = append(e.spans, r)
	s.spans++
	for _, kv := range r.span.GetAttributes() {
		if kv.GetKey() != OrderAttribute {
			continue
		}
		if id, ok := orderID(value(kv.GetValue())); ok && !slices.Contains(e.orders, id) {
			e.orders = append(e.orders, id)
			s.byOrder[id] = append(s.byOrder[id], tid)
		}
	}
}

func (s *Store) evictOldest() {
	id := s.order[0]
	s.order[0] = ""
	s.order = s.order[1:]
	e := s.traces[id]
	if e == nil {
		return
	}
	delete(s.traces, id)
	s.spans -= len(e.spans)
	for _, o := range e.orders {
		ids := slices.DeleteFunc(s.byOrder[o], func(t string) bool { return t == id })
		if len(ids) == 0 {
			delete(s.byOrder, o)
		} else {
			s.byOrder[o] = ids
		}
	}
}

// Stats are the store's counts.
type Stats struct {
	Traces, Spans int
	// Dropped counts spans past MaxSpansPerTrace.
	Dropped int64
}

// Stats returns what the store holds.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Traces: len(s.traces), Spans: s.spans, Dropped: s.dropped}
}

// Trace returns the trace with id, if the store holds it.
func (s *Store) Trace(id trace.TraceID) (Trace, bool) {
	raws, orders, ok := s.entry(string(id[:]))
	if !ok {
		return Trace{}, false
	}
	spans := make([]Span, len(raws))
	for i, r := range raws {
		spans[i] = convert(r.span, r.service, r.instance)
	}
	slices.SortStableFunc(spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return Trace{Summary: summarize(id.String(), raws, orders), Spans: spans}, true
}

// entry returns a copy of what the store holds of trace tid.
func (s *Store) entry(tid string) ([]raw, []int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.traces[tid]
	if e == nil {
		return nil, nil, false
	}
	return slices.Clone(e.spans), slices.Clone(e.orders), true
}

// Order returns the summaries of the traces that touch order id, oldest
// first.
func (s *Store) Order(id int64) []Summary {
	s.mu.Lock()
	ids := slices.Clone(s.byOrder[id])
	s.mu.Unlock()
	return s.summaries(ids)
}

// Recent returns the summaries of the latest n traces, newest first.
func (s *Store) Recent(n int) []Summary {
	s.mu.Lock()
	ids := slices.Clone(s.order[max(0, len(s.order)-n):])
	s.mu.Unlock()
	slices.Reverse(ids)
	return s.summaries(ids)
}

// summaries summarizes the traces ids from their spans as they arrived,
// without converting them.
func (s *Store) summaries(ids []string) []Summary {
	out := make([]Summary, 0, len(ids))
	for _, tid := range ids {
		if raws, orders, ok := s.entry(tid); ok {
			out = append(out, summarize(hex.EncodeToString([]byte(tid)), raws, orders))
		}
	}
	return out
}

func summarize(id string, spans []raw, orders []int64) Summary {
	sum := Summary{TraceID: id, Spans: len(spans), Services: []string{}, OrderIDs: slices.Sorted(slices.Values(orders))}
	have := make(map[string]bool, len(spans))
	for _, r := range spans {
		have[string(r.span.GetSpanId())] = true
	}
	for i, r := range spans {
		sp := r.span
		start, end := time.Unix(0, int64(sp.GetStartTimeUnixNano())).UTC(), time.Unix(0, int64(sp.GetEndTimeUnixNano())).UTC()
		if i == 0 || start.Before(sum.Start) {
			sum.Start = start
		}
		if end.After(sum.End) {
			sum.End = end
		}
		if !slices.Contains(sum.Services, r.service) {
			sum.Services = append(sum.Services, r.service)
		}
		if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			sum.Errors++
		}
		switch parent := sp.GetParentSpanId(); {
		case len(parent) == 0:
			if sum.Root == "" {
				sum.Root, sum.RootService = sp.GetName(), r.service
			}
		case !have[string(parent)]:
			sum.Orphans++
		}
	}
	slices.Sort(sum.Services)
	return sum
}

func orderID(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, v > 0
	case string:
		id, err := strconv.ParseInt(v, 10, 64)
		return id, err == nil && id > 0
	}
	return 0, false
}

var kinds = map[tracepb.Span_SpanKind]string{
	tracepb.Span_SPAN_KIND_INTERNAL: "internal", tracepb.Span_SPAN_KIND_SERVER: "server",
	tracepb.Span_SPAN_KIND_CLIENT: "client", tracepb.Span_SPAN_KIND_PRODUCER: "producer",
	tracepb.Span_SPAN_KIND_CONSUMER: "consumer",
}

func convert(sp *tracepb.Span, service, inst string) Span {
	out := Span{
		TraceID:    hex.EncodeToString(sp.GetTraceId()),
		SpanID:     hex.EncodeToString(sp.GetSpanId()),
		Name:       sp.GetName(),
		Kind:       cmp.Or(kinds[sp.GetKind()], "internal"),
		Service:    service,
		Instance:   inst,
		Start:      time.Unix(0, int64(sp.GetStartTimeUnixNano())).UTC(),
		End:        time.Unix(0, int64(sp.GetEndTimeUnixNano())).UTC(),
		Attributes: attributes(sp.GetAttributes()),
	}
	if p := sp.GetParentSpanId(); len(p) > 0 {
		out.ParentSpanID = hex.EncodeToString(p)
	}
	if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		out.Status, out.StatusMessage = "error", sp.GetStatus().GetMessage()
	}
	for _, ev := range sp.GetEvents() {
		out.Events = append(out.Events, Event{Name: ev.GetName(), Time: time.Unix(0, int64(ev.GetTimeUnixNano())).UTC(), Attributes: attributes(ev.GetAttributes())})
	}
	for _, l := range sp.GetLinks() {
		out.Links = append(out.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, value(e))
		}
		return out
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	}
	return nil
}

// Edge is the calls from one service to another seen in the store's
// traces: a span whose parent span is another service's (an HTTP or gRPC
// call, a message from its creation to its processing).
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Calls  int    `json:"calls"`
	Errors int    `json:"errors"`
	// MeanMS is the mean duration of the callee's spans.
	MeanMS float64 `json:"meanMs"`
}

// Graph returns the edges between services of the spans that started
// within window before now, busiest first.
func (s *Store) Graph(now time.Time, window time.Duration) []Edge {
	since := uint64(now.Add(-window).UnixNano())
	type key struct{ from, to string }
	sums := map[key]*Edge{}
	total := map[key]time.Duration{}
	// The spans as they are now, read outside the lock that takes new ones
	// in: a trace's spans are only ever appended, so what a slice held when
	// it was taken does not change.
	s.mu.Lock()
	traces := make([][]raw, 0, len(s.traces))
	for _, e := range s.traces {
		traces = append(traces, e.spans)
	}
	s.mu.Unlock()
	for _, spans := range traces {
		byID := make(map[string]*raw, len(spans))
		for i := range spans {
			byID[string(spans[i].span.GetSpanId())] = &spans[i]
		}
		for _, r := range spans {
			sp := r.span
			if sp.GetStartTimeUnixNano() < since {
				continue
			}
			parent, ok := byID[string(sp.GetParentSpanId())]
			if !ok || parent.service == r.service {
				continue
			}
			k := key{parent.service, r.service}
			ed := sums[k]
			if ed == nil {
				ed = &Edge{From: k.from, To: k.to}
				sums[k] = ed
			}
			ed.Calls++
			if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				ed.Errors++
			}
			total[k] += time.Duration(sp.GetEndTimeUnixNano() - sp.GetStartTimeUnixNano())
		}
	}
	out := make([]Edge, 0, len(sums))
	for k, ed := range sums {
		ed.MeanMS = float64(total[k]) / float64(ed.Calls) / 1e6
		out = append(out, *ed)
	}
	slices.SortFunc(out, func(a, b Edge) int { return cmp.Or(b.Calls-a.Calls, strings.Compare(a.From+a.To, b.From+b.To)) })
	return out
}
