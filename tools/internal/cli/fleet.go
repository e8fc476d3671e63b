package cli

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// mgmt holds the flags of management commands.
type mgmt struct{ server string }

func (m *mgmt) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.server, "server", os.Getenv("VIGIL_SERVER"), "vigil-server URL (or $VIGIL_SERVER)")
}

func (m *mgmt) client() (*client.Client, error) {
	if m.server == "" {
		return nil, usagef("--server (or $VIGIL_SERVER) is required")
	}
	return client.New(m.server, os.Getenv(EnvToken)), nil
}

func newSiteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Manage hospital sites: time zone, maintenance windows, caps, policy"}
	var m mgmt
	var tz, policy string
	var windows, areas []string
	var siteCap, areaCap int
	put := &cobra.Command{
		Use:   "put NAME",
		Short: "Create or update a site",
		Long: `Create or update a site. Windows are weekly, in any time zone:
  --window "Sun 02:00-05:00 America/Chicago" --window "Wed 01:00-03:00 America/Chicago"
Without windows, assignments may start at any time. --site-cap and
--care-area-cap bound devices installing at once (0: no cap). --policy
"auto-approve: critical" approves critical patches for the site without a person.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			body := map[string]any{"time_zone": tz, "windows": windows, "care_areas": areas, "site_cap": siteCap, "care_area_cap": areaCap, "policy": policy}
			if err := c.Do(cmd.Context(), "PUT", "/api/v1/sites/"+url.PathEscape(args[0]), body, nil); err != nil {
				return err
			}
			return g.emit(map[string]string{"site": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "site %s saved\n", args[0]) })
		},
	}
	m.register(put)
	put.Flags().StringVar(&tz, "time-zone", "", "IANA time zone, e.g. America/Chicago (required)")
	put.Flags().StringArrayVar(&windows, "window", nil, "maintenance window, DAY HH:MM-HH:MM ZONE (repeat)")
	put.Flags().StringArrayVar(&areas, "care-area", nil, "care area name (repeat)")
	put.Flags().IntVar(&siteCap, "site-cap", 0, "devices installing at once at the site (0: no cap)")
	put.Flags().IntVar(&areaCap, "care-area-cap", 0, "devices installing at once per care area (0: no cap)")
	put.Flags().StringVar(&policy, "policy", "", `standing policy, e.g. "auto-approve: critical"`)
	cmd.AddCommand(put)
	return cmd
}

func newDeviceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Register, import and decommission devices"}
	var m mgmt
	var id, udi, product, hw, site, area, tags, pub, installed string
	register := &cobra.Command{
		Use:   "register",
		Short: "Register one device with its public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			k, err := keyfile.ReadPublic(pub)
			if err != nil {
				return UsageError{err}
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return usagef("--public-key %s is not an ed25519 key", pub)
			}
			dev := map[string]any{"id": id, "udi_di": udi, "product": product, "hardware": hw, "site": site, "care_area": area,
				"tags": repotool.SplitList(tags), "public_key": devicesig.EncodePublicKey(ek), "installed_version": installed}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/devices", []any{dev}, nil); err != nil {
				return err
			}
			return g.emit(map[string]string{"registered": id}, func(w io.Writer) { fmt.Fprintf(w, "device %s registered\n", id) })
		},
	}
	m.register(register)
	f := register.Flags()
	f.StringVar(&id, "id", "", "device id (serial number)")
	f.StringVar(&udi, "udi-di", "", "UDI device identifier")
	f.StringVar(&product, "product", "", "product")
	f.StringVar(&hw, "hardware", "", "hardware revision")
	f.StringVar(&site, "site", "", "site")
	f.StringVar(&area, "care-area", "", "care area")
	f.StringVar(&tags, "tags", "", "tags, comma-separated")
	f.StringVar(&pub, "public-key", "", "the device's ed25519 public key file (PEM)")
	f.StringVar(&installed, "installed-version", "", "factory version")

	var im mgmt
	imp := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Register many devices from CSV, all or none",
		Long: "Columns: " + strings.Join([]string{"id", "udi_di", "product", "hardware", "site", "care_area", "tags", "public_key", "installed_version"}, ",") + `
(tags separated by '|', public_key as base64 of the raw ed25519 key). Every row
is checked; an error names its line and nothing is registered.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := im.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return UsageError{err}
			}
			var out struct {
				Registered int `json:"registered"`
			}
			if err := c.DoRaw(cmd.Context(), "/api/v1/devices/import", b, &out); err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "%d devices registered\n", out.Registered) })
		},
	}
	im.register(imp)
	var dm mgmt
	var yes bool
	decom := &cobra.Command{
		Use:   "decommission ID",
		Short: "Retire a device and revoke its key (irreversible; needs --yes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("decommissioning revokes the device's key for good: run again with --yes")
			}
			c, err := dm.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/devices/"+url.PathEscape(args[0])+"/decommission", nil, nil); err != nil {
				return err
			}
			return g.emit(map[string]string{"decommissioned": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "device %s decommissioned\n", args[0]) })
		},
	}
	dm.register(decom)
	decom.Flags().BoolVar(&yes, "yes", false, "confirm")
	cmd.AddCommand(register, imp, decom)
	return cmd
}

// PlanFile is a rollout plan in YAML.
type PlanFile struct {
	Release string `yaml:"release"`
	Select  string `yaml:"select"`
	Waves   string `yaml:"waves"`
	Soak    string `yaml:"soak"`
	Success string `yaml:"success"`
	HaltOn  string `yaml:"halt_on"`
}

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
	}
	var m mgmt
	var p PlanFile
	var planFile string
	create := &cobra.Command{
		Use:   "create",
		Short: "Start a rollout",
		Long: `Example:
  vigil rollout create --release demo-pump@1.1.0 --select "product=demo-pump,hardware=rev-b,version<1.1.0" \
      --waves "canary:1%,pilot:10%,broad:50%,all:100%" --soak 24h --success 95% --halt-on "failure>=5% min=20"
or with --plan plan.yaml holding the same keys (release, select, waves, soak, success, halt_on).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			in := p
			if planFile != "" {
				b, err := os.ReadFile(planFile)
				if err != nil {
					return UsageError{err}
				}
				dec := yaml.NewDecoder(strings.NewReader(string(b)))
				dec.KnownFields(true)
				if err := dec.Decode(&in); err != nil {
					return usagef("plan %s: %v", planFile, err)
				}
			}
			body := map[string]string{"release": in.Release, "select": in.Select, "waves": in.Waves, "soak": in.Soak, "success": in.Success, "halt_on": in.HaltOn}
			var out map[string]string
			if err := c.Do(cmd.Context(), "POST", "/api/v1/rollouts", body, &out); err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "rollout %s created for %s (%s)\n", out["id"], in.Release, out["target"])
			})
		},
	}
	m.register(create)
	cf := create.Flags()
	cf.StringVar(&p.Release, "release", "", "PRODUCT@VERSION (required)")
	cf.StringVar(&p.Select, "select", "", "product=P,hardware=a|b,sites=x|y,tags=t,version<V")
	cf.StringVar(&p.Waves, "waves", "", "NAME:PERCENT,... cumulative, ending at 100% (default all:100%)")
	cf.StringVar(&p.Soak, "soak", "", "minimum time each wave runs before the next opens (default 24h)")
	cf.StringVar(&p.Success, "success", "", "share of a wave that must commit before the next opens (default 95%)")
	cf.StringVar(&p.HaltOn, "halt-on", "", `failure rule (default "failure>=5% min=20")`)
	cf.StringVar(&planFile, "plan", "", "YAML plan file instead of the flags")

	var sm mgmt
	status := &cobra.Command{
		Use:   "status ID",
		Short: "Show a rollout per wave and site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sm.client()
			if err != nil {
				return err
			}
			var st struct {
				ID          string   `json:"id"`
				Release     string   `json:"release"`
				State       string   `json:"state"`
				CurrentWave string   `json:"current_wave"`
				HaltReason  string   `json:"halt_reason"`
				WaitingFor  []string `json:"waiting_for"`
				Counts      []struct {
					Wave, Site                                                  string
					Eligible, Assigned, Installing, Deferred, Committed, Failed int
					RolledBack                                                  int `json:"rolled_back"`
					Approved                                                    bool
				} `json:"counts"`
			}
			var raw map[string]any
			if err := c.Do(cmd.Context(), "GET", "/api/v1/rollouts/"+url.PathEscape(args[0]), nil, &raw); err != nil {
				return err
			}
			if g.output == "json" {
				return g.emit(raw, nil)
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/rollouts/"+url.PathEscape(args[0]), nil, &st); err != nil {
				return err
			}
			w := g.stdout
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
			return nil
		},
	}
	sm.register(status)
	cmd.AddCommand(create, status)
	for _, action := range []string{"pause", "resume", "abort"} {
		var am mgmt
		var yes bool
		c := &cobra.Command{
			Use:   action + " ID",
			Short: strings.ToUpper(action[:1]) + action[1:] + " a rollout",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if action == "abort" && !yes {
					return usagef("an aborted rollout cannot be resumed: run again with --yes")
				}
				cl, err := am.client()
				if err != nil {
					return err
				}
				var out map[string]string
				if err := cl.Do(cmd.Context(), "POST", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/"+action, nil, &out); err != nil {
					return err
				}
				return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "rollout %s is %s\n", args[0], out["state"]) })
			},
		}
		am.register(c)
		if action == "abort" {
			c.Flags().BoolVar(&yes, "yes", false, "confirm")
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func newApproveCmd(g *globals) *cobra.Command {
	var m mgmt
	var wave, site, comment, notBefore string
	var revoke bool
	cmd := &cobra.Command{
		Use:   "approve ROLLOUT",
		Short: "Approve (or --revoke) a rollout wave for your site",
		Long: `Hospital IT approves each wave for its own site; devices there get the
release only after that. --not-before delays the start (RFC 3339 time).
--revoke withdraws an approval before devices started.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			body := map[string]any{"wave": wave, "site": site, "comment": comment, "revoke": revoke}
			if notBefore != "" {
				t, err := time.Parse(time.RFC3339, notBefore)
				if err != nil {
					return usagef("--not-before %q is not an RFC 3339 time", notBefore)
				}
				body["not_before"] = t
			}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/approvals", body, nil); err != nil {
				return err
			}
			verb := "approved"
			if revoke {
				verb = "approval revoked"
			}
			return g.emit(map[string]string{"rollout": args[0], "wave": wave, "site": site, "result": verb}, func(w io.Writer) {
				fmt.Fprintf(w, "wave %s of %s %s for site %s\n", wave, args[0], verb, site)
			})
		},
	}
	m.register(cmd)
	cmd.Flags().StringVar(&wave, "wave", "", "wave name (required)")
	cmd.Flags().StringVar(&site, "site", "", "your site (required)")
	cmd.Flags().StringVar(&comment, "comment", "", "change-control reference or note")
	cmd.Flags().StringVar(&notBefore, "not-before", "", "earliest start, RFC 3339")
	cmd.Flags().BoolVar(&revoke, "revoke", false, "withdraw the approval")
	return cmd
}

func newDeferCmd(g *globals) *cobra.Command {
	var m mgmt
	var wave, site, reason string
	var forDur time.Duration
	cmd := &cobra.Command{
		Use:   "defer ROLLOUT",
		Short: "Defer a wave at your site, with a reason, for a time",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			until := time.Now().Add(forDur)
			if err := c.Do(cmd.Context(), "POST", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/deferrals", map[string]any{"wave": wave, "site": site, "reason": reason, "until": until}, nil); err != nil {
				return err
			}
			return g.emit(map[string]any{"rollout": args[0], "until": until}, func(w io.Writer) {
				fmt.Fprintf(w, "wave %s deferred at %s until %s\n", wave, site, until.Format(time.RFC3339))
			})
		},
	}
	m.register(cmd)
	cmd.Flags().StringVar(&wave, "wave", "", "wave name (required)")
	cmd.Flags().StringVar(&site, "site", "", "your site (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().DurationVar(&forDur, "for", 7*24*time.Hour, "how long")
	return cmd
}

func newReleaseHaltCmd(g *globals) *cobra.Command {
	var m mgmt
	var reason string
	var yes bool
	cmd := &cobra.Command{
		Use:   "halt PRODUCT@VERSION",
		Short: "Emergency halt of every rollout of a release (needs --yes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("halting stops every rollout of %s at once: run again with --yes", args[0])
			}
			c, err := m.client()
			if err != nil {
				return err
			}
			var out struct {
				Halted []string `json:"halted"`
			}
			if err := c.Do(cmd.Context(), "POST", "/api/v1/releases/"+url.PathEscape(args[0])+"/halt", map[string]string{"reason": reason}, &out); err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "halted %d rollout(s) of %s: %s\n", len(out.Halted), args[0], strings.Join(out.Halted, " "))
			})
		},
	}
	m.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
