package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Plan and steer staged rollouts",
		Long: `A rollout takes one published release through waves of the selected devices.
A device's wave is fixed by SHA-256(rollout id ‖ device id). Devices at a site
get the release only after the site approved the wave ('vigil approve'), inside
the site's maintenance windows, and within its caps. The next wave opens when
the current one reached --success and --soak passed; failures reaching
--halt-on halt the rollout by itself. See docs/rollouts.md.`,
		Example: "  vigil rollout status ro-0123456789ab",
	}
	cmd.AddCommand(newRolloutCreateCmd(g), newRolloutStatusCmd(g), newRolloutListCmd(g))
	for _, action := range []string{client.Pause, client.Resume, client.Abort} {
		cmd.AddCommand(newRolloutControlCmd(g, action))
	}
	return cmd
}

func newRolloutListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List rollouts, newest first, with their state and progress",
		Example: "  vigil rollout list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Rollouts(cmd.Context())
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) {
				fmt.Fprintf(w, "%-16s %-20s %-9s %-10s %s\n", "ROLLOUT", "RELEASE", "STATE", "WAVE", "COMMITTED/ELIGIBLE")
				for _, r := range l.Rollouts {
					committed, eligible := 0, 0
					for _, c := range r.Counts {
						committed, eligible = committed+c.Committed, eligible+c.Eligible
					}
					fmt.Fprintf(w, "%-16s %-20s %-9s %-10s %d/%d\n", r.ID, r.Release, r.State, r.CurrentWave, committed, eligible)
				}
			})
		},
	}
}

func newRolloutCreateCmd(g *globals) *cobra.Command {
	var p api.RolloutPlan
	var planFile string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Start a rollout",
		Long: `Start a rollout of a published release, from flags or from a YAML plan file
with the same keys (release, select, waves, soak, success, halt_on).`,
		Example: `  vigil rollout create --release demo-pump@1.1.0 --select "product=demo-pump,hardware=rev-b,version<1.1.0" \
      --waves "canary:1%,pilot:10%,broad:50%,all:100%" --soak 24h --success 95% --halt-on "failure>=5% min=20"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if planFile != "" {
				if p, err = readPlan(planFile); err != nil {
					return err
				}
			}
			out, err := c.CreateRollout(cmd.Context(), p)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "rollout %s created for %s (%s)\n", out.ID, p.Release, out.Target) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Release, "release", "", "PRODUCT@VERSION (required)")
	f.StringVar(&p.Select, "select", "", "product=P,hardware=a|b,sites=x|y,tags=t,version<V")
	f.StringVar(&p.Waves, "waves", "", "NAME:PERCENT,... cumulative, ending at 100% (default all:100%)")
	f.StringVar(&p.Soak, "soak", "", "minimum time each wave runs before the next opens (default 24h)")
	f.StringVar(&p.Success, "success", "", "share of a wave that must commit before the next opens (default 95%)")
	f.StringVar(&p.HaltOn, "halt-on", "", `failure rule (default "failure>=5% min=20")`)
	f.StringVar(&planFile, "plan", "", "YAML plan file instead of the flags")
	return cmd
}

// readPlan reads a YAML plan; unknown keys are errors.
func readPlan(path string) (api.RolloutPlan, error) {
	var p api.RolloutPlan
	b, err := os.ReadFile(path)
	if err != nil {
		return p, UsageError{err}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return p, usagef("plan %s: %v", path, err)
	}
	return p, nil
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status ID",
		Short:   "Show a rollout per wave and site",
		Long:    "Show a rollout's state, its open wave, the sites it waits for, per wave and site how\nmany devices are eligible, assigned, installing, deferred, committed, rolled back or failed,\nand (for release-wide operators) the bytes the repository served of the release: full images\nagainst deltas.",
		Example: "  vigil rollout status ro-0123456789ab -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.RolloutStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(st, func(w io.Writer) { printStatus(w, st) })
		},
	}
}

func printStatus(w io.Writer, st api.RolloutStatus) {
	fmt.Fprintf(w, "rollout %s  %s  %s  (open wave: %s)\n", st.ID, st.Release, strings.ToUpper(st.State), st.CurrentWave)
	if st.HaltReason != "" {
		fmt.Fprintf(w, "halted: %s\n", st.HaltReason)
	}
	if len(st.WaitingFor) > 0 {
		fmt.Fprintf(w, "waiting for the approval of: %s (open wave %s)\n", strings.Join(st.WaitingFor, ", "), st.CurrentWave)
	}
	fmt.Fprintf(w, "%-8s %-12s %8s %8s %8s %10s %8s %9s %11s %6s\n", "WAVE", "SITE", "ELIGIBLE", "APPROVED", "ASSIGNED", "INSTALLING", "DEFERRED", "COMMITTED", "ROLLED_BACK", "FAILED")
	for _, c := range st.Counts {
		fmt.Fprintf(w, "%-8s %-12s %8d %8v %8d %10d %8d %9d %11d %6d\n", c.Wave, c.Site, c.Eligible, c.Approved, c.Assigned, c.Installing, c.Deferred, c.Committed, c.RolledBack, c.Failed)
	}
	if sv := st.Served; sv != nil {
		fmt.Fprintf(w, "served: full images %s in %d requests, deltas %s in %d requests\n", byteSize(sv.FullBytes), sv.FullRequests, byteSize(sv.DeltaBytes), sv.DeltaRequests)
	}
}

// byteSize prints a byte count for people (1,024-based units).
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newRolloutControlCmd(g *globals, action string) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:     action + " ID",
		Short:   strings.ToUpper(action[:1]) + action[1:] + " a rollout",
		Long:    "Pause a rollout (no new assignments), resume a paused or halted one, or abort one for good\n(abort needs --yes).",
		Example: "  vigil rollout " + action + " ro-0123456789ab",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if action == client.Abort {
				if err := confirm(yes, false, "aborting a rollout"); err != nil {
					return err
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.ControlRollout(cmd.Context(), args[0], action)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "rollout %s is %s\n", out.ID, out.State) })
		},
	}
	if action == client.Abort {
		cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	}
	return cmd
}

// Decision is what approve and defer print.
type Decision struct {
	Rollout string    `json:"rollout"`
	Wave    string    `json:"wave"`
	Site    string    `json:"site"`
	Result  string    `json:"result"`
	Until   time.Time `json:"until,omitempty"`
}

func newApproveCmd(g *globals) *cobra.Command {
	var a api.Approval
	var notBefore string
	cmd := &cobra.Command{
		Use:   "approve ROLLOUT",
		Short: "Approve (or --revoke) a rollout wave for your site",
		Long: `Hospital IT approves each wave for its own site; devices there get the
release only after that. --not-before delays the start (RFC 3339 time).
--revoke withdraws an approval before devices started.`,
		Example: `  vigil approve ro-0123456789ab --wave canary --site st-mary --comment "CHG-1234"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if notBefore != "" {
				if a.NotBefore, err = time.Parse(time.RFC3339, notBefore); err != nil {
					return usagef("--not-before %q is not an RFC 3339 time", notBefore)
				}
			}
			if err := c.Approve(cmd.Context(), args[0], a); err != nil {
				return err
			}
			d := Decision{Rollout: args[0], Wave: a.Wave, Site: a.Site, Result: "approved"}
			if a.Revoke {
				d.Result = "approval revoked"
			}
			return g.emit(d, func(w io.Writer) {
				fmt.Fprintf(w, "wave %s of %s %s for site %s\n", d.Wave, d.Rollout, d.Result, d.Site)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.Wave, "wave", "", "wave name (required)")
	f.StringVar(&a.Site, "site", "", "your site (required)")
	f.StringVar(&a.Comment, "comment", "", "change-control reference or note")
	f.StringVar(&notBefore, "not-before", "", "earliest start, RFC 3339")
	f.BoolVar(&a.Revoke, "revoke", false, "withdraw the approval")
	return cmd
}

func newDeferCmd(g *globals) *cobra.Command {
	var d api.Deferral
	var forDur time.Duration
	cmd := &cobra.Command{
		Use:     "defer ROLLOUT",
		Short:   "Defer a wave at your site, with a reason, for a time",
		Long:    "Hospital IT postpones a wave at its site (a survey, a busy week): the site's devices get\nnothing from that wave until the deferral ends.",
		Example: `  vigil defer ro-0123456789ab --wave pilot --site st-mary --reason "Joint Commission survey" --for 72h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d.Until = time.Now().Add(forDur)
			if err := c.Defer(cmd.Context(), args[0], d); err != nil {
				return err
			}
			out := Decision{Rollout: args[0], Wave: d.Wave, Site: d.Site, Result: "deferred", Until: d.Until}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "wave %s deferred at %s until %s\n", d.Wave, d.Site, d.Until.Format(time.RFC3339))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&d.Wave, "wave", "", "wave name (required)")
	f.StringVar(&d.Site, "site", "", "your site (required)")
	f.StringVar(&d.Reason, "reason", "", "why (required)")
	f.DurationVar(&forDur, "for", 7*24*time.Hour, "how long")
	return cmd
}
