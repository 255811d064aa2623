package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry/tracestore"
)

// traceStore is up's in-process trace store: every service of the run
// exports its spans to it over OTLP/HTTP.
type traceStore struct {
	url    string
	srv    *http.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// startTraceStore serves a trace store on a free loopback port; forward,
// when set, is a collector it sends everything on to.
func startTraceStore(forward string, logf func(string, ...any)) (*traceStore, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("trace store: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logWriter(logf), &slog.HandlerOptions{Level: slog.LevelWarn}))
	api := tracestore.NewServer(tracestore.New(tracestore.Config{}), forward, log)
	ctx, cancel := context.WithCancel(context.Background())
	t := &traceStore{url: "http://" + ln.Addr().String(), srv: rest.NewServer(api.Handler()), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		go api.Run(ctx)
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("trace store stopped: %v", err)
		}
	}()
	return t, nil
}

// close stops the store, after the services (whose last spans it takes).
func (t *traceStore) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = t.srv.Shutdown(ctx)
	t.cancel()
	<-t.done
}

// logWriter turns each line written into one logf line.
type logWriter func(string, ...any)

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", bytes.TrimRight(p, "\r\n"))
	return len(p), nil
}
