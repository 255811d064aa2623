package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/discovery"
	"github.com/junction-go/junction/internal/paymentsim"
)

// newChaosCommand breaks a running local system on purpose: it finds an
// instance through the registry and signals its process.
func newChaosCommand(stdout io.Writer) *cobra.Command {
	var registry, data string
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Kill, pause or resume an instance of a running local system",
		Long: `Break a running 'junction up' on purpose and watch it cope. Instances are named
as the registry knows them (junction chaos list); their processes must be on this
machine.

  kill ID     SIGKILL: the supervisor restarts it; callers go to other instances
  stop ID     SIGTERM: a graceful stop (it leaves the registry first)
  pause ID    SIGSTOP: it stops answering; the registry's probes take it out
  resume ID   SIGCONT: it answers again and is taken back
  provider    set the payment provider's latency, error rate, decline rate, outage
  links       list the links of a system started with 'junction up --fault-links'
  link NAME   slow, throttle, blackhole, reset or cut one link`,
	}
	cmd.PersistentFlags().StringVar(&registry, "registry", "", "registry URL ('junction up' prints it)")
	envFlag(cmd.PersistentFlags(), "registry", "JUNCTION_REGISTRY_URL")
	cmd.PersistentFlags().StringVar(&data, "data", ".junction", "data folder of the running 'junction up': its operator certificate reaches the internal ports")
	envFlag(cmd.PersistentFlags(), "data", "JUNCTION_DATA")
	// reg is the registry, reached with the operator's certificate.
	reg := func() (registryAt, error) { return operatorRegistry("chaos", registry, data) }
	instances := func(ctx context.Context) ([]discovery.Instance, error) {
		r, err := reg()
		if err != nil {
			return nil, err
		}
		return r.instances(ctx)
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the instances the registry knows, with their processes", Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			insts, err := instances(cmd.Context())
			if err != nil {
				return err
			}
			for _, in := range insts {
				fmt.Fprintf(stdout, "%-24s %-22s pid %-8s %v\n", in.ID, in.Service, in.Metadata["pid"], in.Endpoints)
			}
			return nil
		},
	})
	for _, a := range []struct {
		name, short string
		sig         syscall.Signal
	}{
		{"kill", "SIGKILL an instance", chaosSignals["kill"]},
		{"stop", "SIGTERM an instance (graceful stop)", chaosSignals["stop"]},
		{"pause", "SIGSTOP an instance (it stops answering)", chaosSignals["pause"]},
		{"resume", "SIGCONT a paused instance", chaosSignals["resume"]},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: a.name + " ID", Short: a.short, Args: usageArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				pid, err := instancePID(cmd.Context(), instances, args[0])
				if err != nil {
					return err
				}
				if err := syscall.Kill(pid, a.sig); err != nil {
					return fmt.Errorf("chaos: %s %s (pid %d): %w", a.name, args[0], pid, err)
				}
				_, err = fmt.Fprintf(stdout, "%s: sent %v to pid %d\n", args[0], a.sig, pid)
				return err
			},
		})
	}
	var f struct {
		latency                time.Duration
		errorRate, declineRate float64
		outage                 bool
		seed                   uint64
	}
	provider := &cobra.Command{
		Use:   "provider",
		Short: "Set the payment provider's faults (every flag at once; the defaults clear them)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := reg()
			if err != nil {
				return err
			}
			v, err := r.lookup(cmd.Context(), services.PaymentProvider, "no payment provider in the registry")
			if err != nil {
				return err
			}
			hc := &http.Client{Transport: r.rt, Timeout: 10 * time.Second}
			body, _ := json.Marshal(paymentsim.Faults{LatencyMS: f.latency.Milliseconds(), ErrorRate: f.errorRate, DeclineRate: f.declineRate, Outage: f.outage, Seed: f.seed})
			for _, in := range v.Instances {
				req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPut, "http://"+in.Endpoints[discovery.EndpointHTTP]+"/v1/admin/faults", bytes.NewReader(body))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					return fmt.Errorf("chaos: %s: %w", in.ID, err)
				}
				answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("chaos: %s answered %s: %s", in.ID, resp.Status, bytes.TrimSpace(answer))
				}
				fmt.Fprintf(stdout, "%s: %s\n", in.ID, bytes.TrimSpace(answer))
			}
			return nil
		},
	}
	pf := provider.Flags()
	pf.DurationVar(&f.latency, "latency", 0, "added to every call")
	pf.Float64Var(&f.errorRate, "error-rate", 0, "share of calls answered 503 (half after the effect)")
	pf.Float64Var(&f.declineRate, "decline-rate", 0, "share of authorizations declined (chosen by idempotency key)")
	pf.BoolVar(&f.outage, "outage", false, "answer every call 503")
	pf.Uint64Var(&f.seed, "seed", 0, "seed of the declines and errors")
	cmd.AddCommand(provider)
	cmd.AddCommand(chaosLinkCommands(reg, stdout)...)
	return cmd
}

// registryAt is a registry's URL and the transport that reaches it (mTLS
// with the operator's certificate, or plaintext).
type registryAt struct {
	url string
	rt  http.RoundTripper
}

// operatorRegistry is the registry at url reached with the operator
// certificate of the run in data, for command (a usage error without url).
func operatorRegistry(command, url, data string) (registryAt, error) {
	if url == "" {
		return registryAt{}, usagef("%s: --registry is needed ('junction up' prints it)", command)
	}
	rt, err := operatorTransport(data)
	return registryAt{url: url, rt: rt}, err
}

func (r registryAt) client() *discovery.Client {
	return discovery.NewClient(r.url, &http.Client{Transport: r.rt})
}

// instances returns every instance the registry lists, by id.
func (r registryAt) instances(ctx context.Context) ([]discovery.Instance, error) {
	cat, err := r.client().Catalog(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var out []discovery.Instance
	for _, v := range cat.Services {
		out = append(out, v.Instances...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// chaosSignals are what chaos kill, stop, pause and resume send.
var chaosSignals = map[string]syscall.Signal{"kill": syscall.SIGKILL, "stop": syscall.SIGTERM, "pause": syscall.SIGSTOP, "resume": syscall.SIGCONT}

// lookup returns service's live instances from the registry, or an
// error saying missing when it has none.
func (r registryAt) lookup(ctx context.Context, service, missing string) (discovery.View, error) {
	v, err := r.client().Lookup(ctx, service)
	if err != nil {
		return v, fmt.Errorf("chaos: %w", err)
	}
	if len(v.Instances) == 0 {
		return v, fmt.Errorf("chaos: %s", missing)
	}
	return v, nil
}

// instancePID finds id's process: through the registry, or, for an
// instance the registry no longer lists (a paused one), among this
// machine's processes by the JUNCTION_INSTANCE_ID 'junction up' gave it. A
// number is taken as a pid.
func instancePID(ctx context.Context, instances func(context.Context) ([]discovery.Instance, error), id string) (int, error) {
	if pid, err := strconv.Atoi(id); err == nil && pid > 1 {
		return pid, nil
	}
	insts, err := instances(ctx)
	if err != nil {
		return 0, err
	}
	for _, in := range insts {
		if in.ID == id {
			pid, err := strconv.Atoi(in.Metadata["pid"])
			if err != nil || pid <= 1 {
				return 0, fmt.Errorf("chaos: %s has no usable pid (%q)", id, in.Metadata["pid"])
			}
			return pid, nil
		}
	}
	if pid := localInstancePID(id); pid > 0 {
		return pid, nil
	}
	return 0, fmt.Errorf("chaos: no instance %q in the registry or on this machine (junction chaos list)", id)
}

func localInstancePID(id string) int {
	entries, _ := os.ReadDir("/proc")
	want := []byte("JUNCTION_INSTANCE_ID=" + id + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, want) {
			return pid
		}
	}
	return 0
}
