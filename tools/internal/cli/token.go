package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke operator API tokens (admin)",
		Long: `Roles: admin (everything), release (publish, devices, rollouts), site-it
(approve, defer and edit windows for the listed sites only), auditor
(read-only, audit log). The secret is printed once; only its hash is kept.
The server's bootstrap token retires itself once an admin token exists.`,
		Example: "  vigil token create --name it-st-mary --role site-it --sites st-mary",
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenRevokeCmd(g), newTokenListCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var t api.TokenRequest
	var sites string
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a token (the secret is shown once)",
		Long:    "Create an operator token with a role (and, for site-it, its sites) and a lifetime.",
		Example: "  vigil token create --name release-ci --role release --expires-in 720h",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t.Sites = repotool.SplitList(sites)
			out, err := c.CreateToken(cmd.Context(), t)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "token %s (%s) until %s:\n%s\nStore it now: it is not shown again.\n", out.ID, out.Role, out.Expires.Format(time.RFC3339), out.Secret)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&t.Name, "name", "", "who or what uses it (required)")
	f.StringVar(&t.Role, "role", "", "admin, release, site-it or auditor (required)")
	f.StringVar(&sites, "sites", "", "site-it only: the sites, comma-separated")
	f.DurationVar(&t.ExpiresIn, "expires-in", 90*24*time.Hour, "lifetime")
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token at once",
		Long:    "Revoke a token: it stops working at once, on every replica.",
		Example: "  vigil token revoke 0a1b2c3d4e5f",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "token %s revoked\n", out.Revoked) })
		},
	}
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never their secrets)",
		Long:    "List every token with its role, sites, expiry and whether it is revoked.",
		Example: "  vigil token list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				for _, t := range out.Tokens {
					fmt.Fprintf(w, "%s  %-8s %-24s sites=%s expires=%s revoked=%v\n", t.ID, t.Role, t.Name, strings.Join(t.Sites, ","), t.Expires.Format(time.RFC3339), t.Revoked)
				}
			})
		},
	}
}
