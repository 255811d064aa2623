package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	deadletterhttp "github.com/junction-go/junction/internal/deadletter/httpapi"
)

// adminClient calls the admin API through the gateway as an administrator.
type adminClient struct {
	gateway, username, password string
	http                        *http.Client
	token                       string
}

func (c *adminClient) login(ctx context.Context) error {
	body, _ := json.Marshal(map[string]string{"username": c.username, "password": c.password})
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/auth/login", body, &tok); err != nil {
		return fmt.Errorf("log in as %s: %w", c.username, err)
	}
	c.token = tok.AccessToken
	return nil
}

func (c *adminClient) call(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.gateway, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(raw, &p)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
	}
	return json.Unmarshal(raw, out)
}

// flags binds the gateway, the administrator's name and password, and
// --json to cmd and its subcommands.
func (c *adminClient) flags(cmd *cobra.Command, asJSON *bool) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.gateway, "gateway", "http://127.0.0.1:8080", "gateway URL")
	envFlag(pf, "gateway", "JUNCTION_GATEWAY")
	pf.StringVar(&c.username, "username", "admin", "administrator to log in as")
	envFlag(pf, "username", "JUNCTION_USERNAME")
	pf.StringVar(&c.password, "password", "junction", "its password")
	envFlag(pf, "password", "JUNCTION_PASSWORD")
	pf.BoolVar(asJSON, "json", false, "print JSON")
}

// page logs in and GETs path's items into out.
func (c *adminClient) page(ctx context.Context, path string, out any) error {
	if err := c.login(ctx); err != nil {
		return err
	}
	return c.call(ctx, http.MethodGet, path, nil, out)
}

func newDeadLettersCommand(stdout io.Writer) *cobra.Command {
	c := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List, show and redrive the messages consumers gave up on",
		Long: `Dead letters are messages a consumer group could not handle (after its retries,
or at once when they can never succeed). deadletter-service keeps each with its
reason, origin topic, group and delivery count. Redrive sends one back to its
topic under its original id: groups that handled it already skip it (inbox),
the group that gave up tries again.`,
	}
	c.flags(cmd, &asJSON)

	type letter = deadletterhttp.LetterJSON
	idArg := func(args []string) (int64, error) {
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || n < 1 {
			return 0, usagef("dead letter id %q: want a positive number", args[0])
		}
		return n, nil
	}
	list := &cobra.Command{
		Use: "list", Short: "List the newest dead letters", Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []letter `json:"items"`
			}
			if err := c.page(cmd.Context(), "/api/admin/deadletters", &page); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(stdout, page)
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tDIED\tTOPIC\tGROUP\tTYPE\tTRIES\tSTATUS\tREASON")
			for _, l := range page.Items {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", l.ID, l.DiedAt, l.Topic, l.Group, l.Type, l.Attempts, l.Status, l.Reason)
			}
			return tw.Flush()
		},
	}
	// onLetter logs in and calls method on one dead letter's path (suffix
	// after its id), decoding the letter it answers.
	onLetter := func(ctx context.Context, args []string, method, suffix string) (letter, error) {
		var l letter
		id, err := idArg(args)
		if err != nil {
			return l, err
		}
		if err := c.login(ctx); err != nil {
			return l, err
		}
		err = c.call(ctx, method, fmt.Sprintf("/api/admin/deadletters/%d%s", id, suffix), nil, &l)
		return l, err
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one dead letter with its headers and body", Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := onLetter(cmd.Context(), args, http.MethodGet, "")
			if err != nil {
				return err
			}
			return writeJSON(stdout, l)
		},
	}
	redrive := &cobra.Command{
		Use: "redrive ID", Short: "Send a dead letter back to its topic for another try", Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := onLetter(cmd.Context(), args, http.MethodPost, "/redrive")
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(stdout, l)
			}
			_, err = fmt.Fprintf(stdout, "dead letter %d (%s %s) sent back to %s; redriven %d time(s)\n", l.ID, l.Type, l.MessageID, l.Topic, l.Redrives)
			return err
		},
	}
	cmd.AddCommand(list, show, redrive)
	return cmd
}
