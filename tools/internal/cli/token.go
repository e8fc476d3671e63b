package cli

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke operator API tokens (admin)",
		Long: `Roles: admin (everything), release (publish, devices, rollouts), site-it
(approve, defer and edit windows for the listed sites only), auditor
(read-only, audit log). The secret is printed once; only its hash is kept.`,
	}
	var m mgmt
	var name, role, sites string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token (the secret is shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			var out struct {
				ID      string    `json:"id"`
				Token   string    `json:"token"`
				Role    string    `json:"role"`
				Expires time.Time `json:"expires"`
			}
			body := map[string]any{"name": name, "role": role, "sites": repotool.SplitList(sites), "expires_in": expires}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/tokens", body, &out); err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "token %s (%s) until %s:\n%s\nStore it now: it is not shown again.\n", out.ID, out.Role, out.Expires.Format(time.RFC3339), out.Token)
			})
		},
	}
	m.register(create)
	create.Flags().StringVar(&name, "name", "", "who or what uses it (required)")
	create.Flags().StringVar(&role, "role", "", "admin, release, site-it or auditor (required)")
	create.Flags().StringVar(&sites, "sites", "", "site-it only: the sites, comma-separated")
	create.Flags().DurationVar(&expires, "expires-in", 90*24*time.Hour, "lifetime")
	var rm mgmt
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rm.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "DELETE", "/api/v1/tokens/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return g.emit(map[string]string{"revoked": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "token %s revoked\n", args[0]) })
		},
	}
	rm.register(revoke)
	var lm mgmt
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lm.client()
			if err != nil {
				return err
			}
			var out struct {
				Tokens []struct {
					ID, Name, Role string
					Sites          []string
					Expires        time.Time
					Revoked        bool
				} `json:"tokens"`
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/tokens", nil, &out); err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				for _, t := range out.Tokens {
					fmt.Fprintf(w, "%s  %-8s %-24s sites=%s expires=%s revoked=%v\n", t.ID, t.Role, t.Name, strings.Join(t.Sites, ","), t.Expires.Format(time.RFC3339), t.Revoked)
				}
			})
		},
	}
	lm.register(list)
	cmd.AddCommand(create, revoke, list)
	return cmd
}
