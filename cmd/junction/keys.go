package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newKeysCommand lists and rotates user-service's signing keys through the
// gateway, as an administrator.
func newKeysCommand(stdout io.Writer) *cobra.Command {
	c := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	var asJSON bool
	var delay time.Duration
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the keys that sign access tokens",
		Long: `user-service signs access tokens with the newest active key and publishes every
key that is active, about to be, or retiring at /.well-known/jwks.json. A rotation
publishes a new key at once and signs with it after --publish-delay (longer than a
verifier's refresh interval, so no verifier meets a kid it cannot fetch); the key it
replaces stays published until its last token has expired. No request fails across
a rotation.`,
	}
	c.flags(cmd, &asJSON)
	type key struct {
		KeyID     string `json:"kid"`
		CreatedAt string `json:"createdAt"`
		Activates string `json:"activatesAt"`
		Retires   string `json:"retiresAt,omitempty"`
		Signing   bool   `json:"signing"`
	}
	show := func(keys []key) error {
		if asJSON {
			return writeJSON(stdout, keys)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tCREATED\tSIGNS FROM\tRETIRES\tSIGNING")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", k.KeyID, k.CreatedAt, k.Activates, k.Retires, k.Signing)
		}
		return tw.Flush()
	}
	list := &cobra.Command{
		Use: "list", Short: "List the signing keys and which one signs", Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []key `json:"items"`
			}
			if err := c.page(cmd.Context(), "/api/admin/keys", &page); err != nil {
				return err
			}
			return show(page.Items)
		},
	}
	rotate := &cobra.Command{
		Use: "rotate", Short: "Publish a new signing key now; it signs after --publish-delay", Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.login(cmd.Context()); err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"publishDelay": delay.String()})
			var k key
			if err := c.call(cmd.Context(), http.MethodPost, "/api/admin/keys/rotate", body, &k); err != nil {
				return err
			}
			return show([]key{k})
		},
	}
	rotate.Flags().DurationVar(&delay, "publish-delay", 30*time.Second, "time the new key is published before it signs (at least 15s)")
	cmd.AddCommand(list, rotate)
	return cmd
}
