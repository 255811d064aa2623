package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/junction-go/junction/discovery"
)

// HTTPCheck probes an instance's readiness: GET /readyz on its http
// endpoint must answer 200, asked with the client clients has for it.
func HTTPCheck(clients discovery.Clients) Check {
	return func(ctx context.Context, inst discovery.Instance) error {
		client := clients.For(inst)
		addr := inst.Endpoints[discovery.EndpointHTTP]
		if addr == "" {
			return nil // nothing to probe
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}
}
