package rest

import (
	"context"
	"errors"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server timeouts: a slow or stalled client cannot hold a connection for
// long (slowloris), while a normal request has ample time.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 32 << 10
)

// NewServer returns an http.Server for h with Junction's timeouts and header
// limit, reporting its own errors to log (ErrorLog).
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ErrorLog:          ErrorLog(log),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// Serve serves srv on ln until ctx is done, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish for up to grace, and
// closes what is left. It returns nil after a shutdown that ctx asked for.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	fresh := trackFresh(srv)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// A connection that has not begun a request is closed soon, not held
	// for the whole grace as http.Server holds it (it counts one as idle
	// only after 5 s): with TLS, a client's dial that outlived its
	// request leaves just such a connection, its handshake done.
	go func() {
		select {
		case <-time.After(min(grace, freshGrace)):
			fresh.closeAll()
		case <-sctx.Done():
		}
	}()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// freshGrace is how long, once a shutdown begins, a connection may take to
// send its first byte before it is closed.
const freshGrace = 250 * time.Millisecond

// freshConns are a server's connections that have not begun a request.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// trackFresh keeps srv's connections in StateNew (keeping any ConnState
// hook srv has).
func trackFresh(srv *http.Server) *freshConns {
	f := &freshConns{conns: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.mu.Lock()
		if st == http.StateNew {
			f.conns[c] = struct{}{}
		} else {
			delete(f.conns, c)
		}
		f.mu.Unlock()
		if prev != nil {
			prev(c, st)
		}
	}
	return f
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
		delete(f.conns, c)
	}
}

// ErrorLog is an http.Server's ErrorLog over log: a TLS handshake that
// failed (a scanner, a client without a certificate, a dial given up
// half-way) is a debug line, as it heals itself or is the refusal
// working; anything else the server reports is a warning.
func ErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(serverErrors{log}, "", 0)
}

type serverErrors struct{ log *slog.Logger }

func (e serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(strings.TrimPrefix(string(p), "http: "))
	if strings.HasPrefix(msg, "TLS handshake error") {
		e.log.Debug("refused connection", "reason", msg)
	} else {
		e.log.Warn("http server", "err", msg)
	}
	return len(p), nil
}
