package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/junction-go/junction/internal/faultinject"
)

// faultLinksService is the registry name of up's Toxiproxy API.
const faultLinksService = "fault-links"

// faultLinks are the Toxiproxy links 'junction up --fault-links' puts in
// front of every instance: "<instance>" in front of its HTTP port (every
// caller, the gateway and the registry's probes included, goes through it)
// and "<instance>->broker" between it and the broker.
type faultLinks struct {
	fp     *faultinject.Server
	srv    *http.Server
	api    string // host:port of the Toxiproxy API
	broker string // host:port of the broker, "" when it is not NATS
}

func startFaultLinks(brokerURL string) (*faultLinks, error) {
	l := &faultLinks{fp: faultinject.New()}
	if u, err := url.Parse(brokerURL); err == nil && u.Scheme == "nats" {
		l.broker = u.Host
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault links: %w", err)
	}
	l.api = ln.Addr().String()
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	mux.HandleFunc("GET /healthz", ok) // the registry probes it like any instance (200)
	mux.HandleFunc("GET /readyz", ok)
	mux.Handle("/", l.fp.Handler())
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("fault links: %v\n", err)
		}
	}()
	return l, nil
}

// add makes the links of instance id and returns the environment that
// puts the instance behind them: it listens on a port of its own and
// registers the link's address instead.
func (l *faultLinks) add(id string) ([]string, error) {
	own, err := fixedPort()
	if err != nil {
		return nil, err
	}
	in, err := l.fp.Proxy(id, own)
	if err != nil {
		return nil, err
	}
	env := []string{"JUNCTION_HTTP_ADDR=" + own, "JUNCTION_ADVERTISE_HTTP_ADDR=" + in.Addr()}
	if l.broker != "" {
		out, err := l.fp.Proxy(id+"->broker", l.broker)
		if err != nil {
			return nil, err
		}
		env = append(env, "JUNCTION_BROKER=nats://"+out.Addr())
	}
	return env, nil
}

func (l *faultLinks) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
	l.fp.Close()
}
