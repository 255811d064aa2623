package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/spf13/cobra"

	"github.com/junction-go/junction/discovery"
)

// linkFaults are the faults `junction chaos link` sets; zero values clear.
type linkFaults struct {
	latency, jitter time.Duration
	bandwidth       int64 // KB/s
	blackhole       bool
	reset           bool
	down            bool
	toxicity        float32
}

// linkJSON is one link and its faults, as junction chaos links and the
// control API show it.
type linkJSON struct {
	Name     string   `json:"name"`
	Listen   string   `json:"listen"`
	Upstream string   `json:"upstream"`
	Down     bool     `json:"down"`
	Toxics   []string `json:"toxics"`
}

// listLinks returns the links of c, by name, each with its faults.
func listLinks(c *toxiclient.Client) ([]linkJSON, error) {
	proxies, err := c.Proxies()
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	out := make([]linkJSON, 0, len(proxies))
	for _, p := range proxies {
		l := linkJSON{Name: p.Name, Listen: p.Listen, Upstream: p.Upstream, Down: !p.Enabled, Toxics: []string{}}
		for _, t := range p.ActiveToxics {
			l.Toxics = append(l.Toxics, fmt.Sprintf("%s%v@%.0f%%", t.Type, t.Attributes, t.Toxicity*100))
		}
		sort.Strings(l.Toxics)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// applyLinkFaults replaces the faults of link p with f's.
func applyLinkFaults(p *toxiclient.Proxy, f linkFaults) error {
	if f.toxicity <= 0 || f.toxicity > 1 {
		return fmt.Errorf("chaos: --toxicity %v must be above 0 and at most 1", f.toxicity)
	}
	if f.latency < 0 || f.jitter < 0 || f.bandwidth < 0 {
		return fmt.Errorf("chaos: --latency, --jitter and --bandwidth must not be negative")
	}
	for _, t := range p.ActiveToxics {
		if err := p.RemoveToxic(t.Name); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	}
	add := func(name, typ string, attrs toxiclient.Attributes) error {
		for _, stream := range []string{"upstream", "downstream"} {
			if _, err := p.AddToxic(name+"-"+stream, typ, stream, f.toxicity, attrs); err != nil {
				return fmt.Errorf("chaos: %s: %w", name, err)
			}
		}
		return nil
	}
	if f.latency > 0 {
		// Half each way, so a round trip gains the whole of it.
		if err := add("latency", "latency", toxiclient.Attributes{"latency": f.latency.Milliseconds() / 2, "jitter": f.jitter.Milliseconds() / 2}); err != nil {
			return err
		}
	}
	if f.bandwidth > 0 {
		if err := add("bandwidth", "bandwidth", toxiclient.Attributes{"rate": f.bandwidth}); err != nil {
			return err
		}
	}
	if f.blackhole {
		if err := add("blackhole", "timeout", toxiclient.Attributes{"timeout": 0}); err != nil {
			return err
		}
	}
	if f.reset {
		if _, err := p.AddToxic("reset", "reset_peer", "downstream", f.toxicity, toxiclient.Attributes{"timeout": 0}); err != nil {
			return fmt.Errorf("chaos: reset: %w", err)
		}
	}
	if f.down == p.Enabled {
		var err error
		if f.down {
			err = p.Disable()
		} else {
			err = p.Enable()
		}
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	}
	return nil
}

// chaosLinkCommands are `chaos links` and `chaos link NAME`: the Toxiproxy
// links 'junction up --fault-links' put in front of every instance.
func chaosLinkCommands(reg func() (registryAt, error), stdout io.Writer) []*cobra.Command {
	api := func(ctx context.Context) (*toxiclient.Client, error) {
		r, err := reg()
		if err != nil {
			return nil, err
		}
		v, err := r.lookup(ctx, faultLinksService, "no fault links in this system; start it with 'junction up --fault-links'")
		if err != nil {
			return nil, err
		}
		return toxiclient.NewClient("http://" + v.Instances[0].Endpoints[discovery.EndpointHTTP]), nil
	}
	list := &cobra.Command{
		Use: "links", Short: "List the links (with --fault-links) and the faults on them", Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := api(cmd.Context())
			if err != nil {
				return err
			}
			links, err := listLinks(c)
			if err != nil {
				return err
			}
			for _, l := range links {
				state := "up"
				if l.Down {
					state = "down"
				}
				fmt.Fprintf(stdout, "%-36s %-4s %s -> %s %s\n", l.Name, state, l.Listen, l.Upstream, strings.Join(l.Toxics, " "))
			}
			return nil
		},
	}
	var f linkFaults
	link := &cobra.Command{
		Use:   "link NAME",
		Short: "Set the faults of one link (every flag at once; none clears them)",
		Long: `Set the faults on one link of a system started with 'junction up --fault-links':
NAME is an instance ("order-service-1": every call to it) or an instance's broker
connection ("order-service-1->broker"); 'junction chaos links' lists them. The
flags replace whatever was set; with none, the link is healthy again.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api(cmd.Context())
			if err != nil {
				return err
			}
			p, err := c.Proxy(args[0])
			if err != nil {
				return fmt.Errorf("chaos: link %q: %w (junction chaos links)", args[0], err)
			}
			if err := applyLinkFaults(p, f); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: latency %v ± %v, bandwidth %d KB/s, blackhole %t, reset %t, down %t (%.0f%% of connections)\n",
				args[0], f.latency, f.jitter, f.bandwidth, f.blackhole, f.reset, f.down, f.toxicity*100)
			return nil
		},
	}
	lf := link.Flags()
	lf.DurationVar(&f.latency, "latency", 0, "added to each round trip")
	lf.DurationVar(&f.jitter, "jitter", 0, "± this much on the latency")
	lf.Int64Var(&f.bandwidth, "bandwidth", 0, "at most this many KB/s each way")
	lf.BoolVar(&f.blackhole, "blackhole", false, "drop every byte and hold the connection open (a partition)")
	lf.BoolVar(&f.reset, "reset", false, "reset connections (TCP RST) as answers start")
	lf.BoolVar(&f.down, "down", false, "refuse connections and drop open ones")
	lf.Float32Var(&f.toxicity, "toxicity", 1, "share of connections affected")
	return []*cobra.Command{list, link}
}
