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

	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/rest"
	"github.com/junction-go/junction/telemetry/tracestore"
)

// localServer is an HTTP server of up's own process on a free loopback
// port (the trace store, the control API).
type localServer struct {
	url  string
	srv  *http.Server
	done chan struct{}
}

// serveLocal serves h on a free loopback port until close; name is for
// errors. With ident set, it speaks mTLS and lets policy decide who may
// call what.
func serveLocal(name string, h http.Handler, ident *identity.Source, policy *identity.Policy, logf func(string, ...any)) (*localServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	scheme := "http://"
	if ident != nil {
		ln, h = ident.Guard(policy, ln, h)
		scheme = "https://"
	}
	l := &localServer{url: scheme + ln.Addr().String(), srv: rest.NewServer(h, localLog(logf)), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("%s stopped: %v", name, err)
		}
	}()
	return l, nil
}

func (l *localServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
	<-l.done
}

// localLog is the logger of up's local servers: warnings and errors, as
// up's own lines.
func localLog(logf func(string, ...any)) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter(logf), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// traceStore is up's in-process trace store: every service of the run
// exports its spans to it over OTLP/HTTP.
type traceStore struct {
	*localServer
	cancel context.CancelFunc
}

// startTraceStore serves a trace store on a free loopback port; forward,
// when set, is a collector it sends everything on to.
func startTraceStore(forward string, logf func(string, ...any)) (*traceStore, error) {
	api := tracestore.NewServer(tracestore.New(tracestore.Config{}), forward, localLog(logf))
	l, err := serveLocal("trace store", api.Handler(), nil, nil, logf)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go api.Run(ctx)
	return &traceStore{localServer: l, cancel: cancel}, nil
}

// close stops the store, after the services (whose last spans it takes).
func (t *traceStore) close() {
	t.localServer.close()
	t.cancel()
}

// logWriter turns each line written into one logf line.
type logWriter func(string, ...any)

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", bytes.TrimRight(p, "\r\n"))
	return len(p), nil
}
