package main

import (
	"net/http"
	"strconv"
	"syscall"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/identity"
	"github.com/junction-go/junction/rest"
)

// startControl serves up's operations API, on a loopback port whose URL every child
// gets as JUNCTION_CONTROL_URL: the signals 'junction chaos' sends, for
// the ops dashboard (the gateway forwards an administrator's request and
// logs who made it).
//
//	POST /v1/instances/{id}/{kill|stop|pause|resume}
//	GET  /v1/links                 with --fault-links: every link and its faults
//	PUT  /v1/links/{name}          set a link's faults (as junction chaos link): {"latencyMs":200,
//	                               "jitterMs":0,"bandwidthKBs":0,"blackhole":false,"reset":false,"down":false,"toxicity":1}
//
// With ident set, it speaks mTLS and takes the gateway and the operator
// only.
func startControl(reg registryAt, linksAPI string, ident *identity.Source, logf func(string, ...any)) (*localServer, error) {
	log := localLog(logf)
	instances := reg.instances
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/instances/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id, action := r.PathValue("id"), r.PathValue("action")
		sig, ok := chaosSignals[action]
		if !ok {
			rest.Error(w, r, log, fault.New(fault.Invalid, "%q: the actions are kill, stop, pause and resume", action))
			return
		}
		if _, err := strconv.Atoi(id); err == nil {
			rest.Error(w, r, log, fault.New(fault.Invalid, "name the instance (gateway-1), not a process"))
			return
		}
		pid, err := instancePID(r.Context(), instances, id)
		if err != nil {
			rest.Error(w, r, log, fault.Wrap(fault.NotFound, err, "no instance %q in this run", id))
			return
		}
		if err := syscall.Kill(pid, sig); err != nil {
			rest.Error(w, r, log, fault.Wrap(fault.Conflict, err, "%s (pid %d): %v", id, pid, err))
			return
		}
		logf("%s: sent %v (pid %d) for the ops page", id, sig, pid)
		rest.JSON(w, http.StatusOK, map[string]any{"instance": id, "action": action, "pid": pid})
	})
	if linksAPI != "" {
		links := toxiclient.NewClient("http://" + linksAPI)
		mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) {
			out, err := listLinks(links)
			if err != nil {
				rest.Error(w, r, log, fault.Wrap(fault.Unavailable, err, "the links cannot be read"))
				return
			}
			rest.JSON(w, http.StatusOK, map[string]any{"links": out})
		})
		mux.HandleFunc("PUT /v1/links/{name}", func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				LatencyMS    int64    `json:"latencyMs"`
				JitterMS     int64    `json:"jitterMs"`
				BandwidthKBs int64    `json:"bandwidthKBs"`
				Blackhole    bool     `json:"blackhole"`
				Reset        bool     `json:"reset"`
				Down         bool     `json:"down"`
				Toxicity     *float32 `json:"toxicity"`
			}
			if err := rest.Decode(w, r, 4<<10, &in); err != nil {
				rest.Error(w, r, log, err)
				return
			}
			p, err := links.Proxy(r.PathValue("name"))
			if err != nil {
				rest.Error(w, r, log, fault.Wrap(fault.NotFound, err, "no link %q", r.PathValue("name")))
				return
			}
			f := linkFaults{latency: time.Duration(in.LatencyMS) * time.Millisecond, jitter: time.Duration(in.JitterMS) * time.Millisecond,
				bandwidth: in.BandwidthKBs, blackhole: in.Blackhole, reset: in.Reset, down: in.Down, toxicity: 1}
			if in.Toxicity != nil {
				f.toxicity = *in.Toxicity
			}
			if err := applyLinkFaults(p, f); err != nil {
				rest.Error(w, r, log, fault.Wrap(fault.Invalid, err, "%v", err))
				return
			}
			logf("link %s: faults set for the ops page: %+v", p.Name, in)
			rest.JSON(w, http.StatusOK, map[string]any{"link": p.Name})
		})
	}
	p, err := identity.NewPolicy([]identity.Rule{{Pattern: "/v1/", Callers: []string{services.Gateway, services.Operator}}})
	if err != nil {
		return nil, err
	}
	return serveLocal("control", mux, ident, p, logf)
}
