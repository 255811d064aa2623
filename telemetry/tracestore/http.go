package tracestore

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// MaxBody is the largest OTLP request accepted (after decompression).
const MaxBody = 16 << 20

// Server is the store's HTTP API:
//
//	POST /v1/traces                OTLP/HTTP (protobuf, optionally gzip): what exporters send
//	GET  /v1/traces?limit=50       the latest traces' summaries, newest first
//	GET  /v1/traces/{traceId}      one trace with every span, by start time
//	GET  /v1/orders/{id}/traces    the summaries of the traces that touch an order
//	GET  /v1/graph?window=60s      the calls between services in the spans of the last window
type Server struct {
	store *Store
	log   *slog.Logger
	fwd   *forwarder
}

// NewServer serves store. With forward set (an OTLP/HTTP base URL, such as
// Jaeger's http://host:4318), every export received is also sent there,
// from a bounded queue: a slow or absent collector costs the senders
// nothing, and what does not fit is dropped and logged.
func NewServer(store *Store, forward string, log *slog.Logger) *Server {
	s := &Server{store: store, log: log}
	if forward != "" {
		s.fwd = &forwarder{url: forward + "/v1/traces", queue: make(chan export, 256), log: log, client: &http.Client{Timeout: 10 * time.Second}}
	}
	return s
}

// Run forwards until ctx is done; without a forward URL it returns at once.
func (s *Server) Run(ctx context.Context) {
	if s.fwd != nil {
		s.fwd.run(ctx)
	}
}

// Handler is the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.receive)
	mux.HandleFunc("GET /v1/traces", s.recent)
	mux.HandleFunc("GET /v1/traces/{id}", s.trace)
	mux.HandleFunc("GET /v1/orders/{id}/traces", s.order)
	mux.HandleFunc("GET /v1/graph", s.graph)
	return mux
}

func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-protobuf" {
		rest.WriteProblem(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "send OTLP/HTTP as application/x-protobuf (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)")
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, MaxBody)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			rest.Error(w, r, s.log, fault.New(fault.Invalid, "the body is not gzip: %v", err))
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, MaxBody+1)
	default:
		rest.WriteProblem(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Encoding "+strconv.Quote(enc)+" is not supported; gzip or none")
		return
	}
	raw, err := io.ReadAll(body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || len(raw) > MaxBody:
		rest.Error(w, r, s.log, fault.New(fault.TooLarge, "an export is at most %d bytes", MaxBody))
		return
	case err != nil:
		rest.Error(w, r, s.log, fault.New(fault.Invalid, "reading the body: %v", err))
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		rest.Error(w, r, s.log, fault.New(fault.Invalid, "not an OTLP trace export: %v", err))
		return
	}
	s.store.Add(req.GetResourceSpans())
	if s.fwd != nil {
		s.fwd.offer(raw)
	}
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func (s *Server) recent(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			rest.Error(w, r, s.log, fault.New(fault.Invalid, "limit is a number from 1 to 1000"))
			return
		}
		limit = n
	}
	rest.JSON(w, http.StatusOK, map[string]any{"traces": s.store.Recent(limit)})
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id, err := trace.TraceIDFromHex(r.PathValue("id"))
	if err != nil {
		rest.Error(w, r, s.log, fault.New(fault.Invalid, "a trace id is 32 lowercase hex digits, not all zero"))
		return
	}
	t, ok := s.store.Trace(id)
	if !ok {
		rest.Error(w, r, s.log, fault.New(fault.NotFound, "no trace %s here (never received, or evicted: the store keeps the latest %d spans)", id, s.store.cfg.MaxSpans))
		return
	}
	rest.JSON(w, http.StatusOK, t)
}

func (s *Server) order(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		rest.Error(w, r, s.log, fault.New(fault.Invalid, "order id must be a positive integer"))
		return
	}
	rest.JSON(w, http.StatusOK, map[string]any{"orderId": id, "traces": s.store.Order(id)})
}

type export []byte

// forwarder sends exports on to another collector, one at a time, from a
// bounded queue.
type forwarder struct {
	url     string
	queue   chan export
	client  *http.Client
	log     *slog.Logger
	dropped atomic.Int64
	failed  atomic.Int64
}

func (f *forwarder) offer(raw []byte) {
	select {
	case f.queue <- export(raw):
	default:
		f.dropped.Add(1)
	}
}

func (f *forwarder) run(ctx context.Context) {
	lastSaid := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case raw := <-f.queue:
			err := f.send(ctx, raw)
			if err != nil {
				f.failed.Add(1)
			}
			if (err != nil || f.dropped.Load() > 0) && time.Since(lastSaid) > time.Minute && ctx.Err() == nil {
				f.log.Warn("traces not forwarded to the collector", "url", f.url, "err", err,
					"failed_exports", f.failed.Swap(0), "dropped_exports", f.dropped.Swap(0))
				lastSaid = time.Now()
			}
		}
	}
}

func (f *forwarder) send(ctx context.Context, raw []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New("collector answered " + resp.Status)
	}
	return nil
}

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	window := time.Minute
	if q := r.URL.Query().Get("window"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < time.Second || d > time.Hour {
			rest.Error(w, r, s.log, fault.New(fault.Invalid, "window is a duration from 1s to 1h, such as 60s"))
			return
		}
		window = d
	}
	rest.JSON(w, http.StatusOK, map[string]any{"window": window.String(), "edges": s.store.Graph(time.Now(), window)})
}
