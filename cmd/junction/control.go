package main

import (
	"context"
	"net/http"
	"strconv"
	"syscall"

	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/fault"
	"github.com/junction-go/junction/rest"
)

// startControl serves up's operations API, on a loopback port whose URL every child
// gets as JUNCTION_CONTROL_URL: the signals 'junction chaos' sends, for
// the ops dashboard (the gateway forwards an administrator's request and
// logs who made it).
//
//	POST /v1/instances/{id}/{kill|stop|pause|resume}
func startControl(registryURL string, logf func(string, ...any)) (*localServer, error) {
	log := localLog(logf)
	instances := func(ctx context.Context) ([]discovery.Instance, error) { return registryInstances(ctx, registryURL) }
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
	return serveLocal("control", mux, logf)
}
