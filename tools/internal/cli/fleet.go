package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/api/devicesig"
)

func newSiteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "site",
		Short:   "Manage hospital sites: time zone, maintenance windows, caps, policy",
		Long:    "A site is one hospital (or campus): its time zone, the weekly windows in which its devices\nmay install, how many may install at once, and its standing approval policy.",
		Example: `  vigil site put st-mary --time-zone America/Chicago --window "Sun 02:00-05:00 America/Chicago" --site-cap 10`,
	}
	var s api.Site
	put := &cobra.Command{
		Use:   "put NAME",
		Short: "Create or update a site",
		Long: `Create or update a site. Windows are weekly, in any time zone:
  --window "Sun 02:00-05:00 America/Chicago" --window "Wed 01:00-03:00 America/Chicago"
Without windows, assignments may start at any time. --site-cap and
--care-area-cap bound devices installing at once (0: no cap). --policy
"auto-approve: critical" approves critical patches for the site without a person.`,
		Example: `  vigil site put st-mary --time-zone America/Chicago --care-area icu --site-cap 10 --care-area-cap 2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			s.Name = args[0]
			out, err := c.PutSite(cmd.Context(), s)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "site %s saved\n", out.Site) })
		},
	}
	f := put.Flags()
	f.StringVar(&s.TimeZone, "time-zone", "", "IANA time zone, e.g. America/Chicago (required)")
	f.StringArrayVar(&s.Windows, "window", nil, "maintenance window, DAY HH:MM-HH:MM ZONE (repeat)")
	f.StringArrayVar(&s.CareAreas, "care-area", nil, "care area name (repeat)")
	f.IntVar(&s.SiteCap, "site-cap", 0, "devices installing at once at the site (0: no cap)")
	f.IntVar(&s.CareAreaCap, "care-area-cap", 0, "devices installing at once per care area (0: no cap)")
	f.StringVar(&s.Policy, "policy", "", `standing policy, e.g. "auto-approve: critical"`)
	cmd.AddCommand(put)
	return cmd
}

func newDeviceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "device",
		Short:   "Register, import and decommission devices",
		Long:    "Register devices with the public key each one got at manufacturing (one by one, or many\nfrom CSV, all or none), and decommission them (their key stops working at once).",
		Example: "  vigil device import devices.csv",
	}
	cmd.AddCommand(newDeviceRegisterCmd(g), newDeviceImportCmd(g), newDeviceDecommissionCmd(g), newDeviceListCmd(g))
	return cmd
}

func newDeviceListCmd(g *globals) *cobra.Command {
	var q client.DeviceQuery
	cmd := &cobra.Command{
		Use:     "list [--site S] [--care-area A] [--version V] [--q PREFIX]",
		Short:   "List devices: version, agent state, last seen, pending assignment",
		Long:    "List devices a page at a time (ordered by site, then id). A site-it token sees its own sites.",
		Example: "  vigil device list --site st-mary --version 1.0.0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			page, err := c.Devices(cmd.Context(), q)
			if err != nil {
				return err
			}
			return g.emit(page, func(w io.Writer) { printDevicePage(w, page) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Site, "site", "", "only this site")
	f.StringVar(&q.CareArea, "care-area", "", "only this care area")
	f.StringVar(&q.Product, "product", "", "only this product")
	f.StringVar(&q.Version, "version", "", "only devices running this version")
	f.StringVar(&q.Prefix, "q", "", "only device ids starting with this")
	f.IntVar(&q.Offset, "offset", 0, "skip this many")
	f.IntVar(&q.Limit, "limit", 0, "at most this many (default 100, at most 1000)")
	return cmd
}

func printDevicePage(w io.Writer, p api.DevicePage) {
	fmt.Fprintf(w, "%-14s %-12s %-10s %-10s %-12s %-20s %s\n", "DEVICE", "SITE", "CARE AREA", "VERSION", "STATE", "LAST SEEN", "PENDING")
	for _, d := range p.Devices {
		pending := "-"
		if d.Pending != nil {
			pending = d.Pending.Release + " (" + string(d.Pending.State) + ")"
		}
		state := string(d.State)
		if d.InUse {
			state += " (in use)"
		}
		fmt.Fprintf(w, "%-14s %-12s %-10s %-10s %-12s %-20s %s\n", d.ID, d.Site, d.CareArea, d.Installed, state, when(d.LastSeen), pending)
	}
	fmt.Fprintf(w, "%d–%d of %d\n", min(p.Offset+1, p.Total), p.Offset+len(p.Devices), p.Total)
}

func newDeviceRegisterCmd(g *globals) *cobra.Command {
	var d api.Device
	var tags, pub string
	cmd := &cobra.Command{
		Use:     "register",
		Short:   "Register one device with its public key",
		Long:    "Register one device: its id (serial), UDI-DI, product, hardware, site, care area, tags and\nthe ed25519 public key file 'vigil keys generate' wrote for it.",
		Example: "  vigil device register --id PUMP-0001 --product demo-pump --hardware rev-b --site st-mary --public-key keys/pump-0001.pub",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if pub == "" {
				return usagef("--public-key is required: the .pub file 'vigil keys generate' wrote for the device")
			}
			raw, err := os.ReadFile(pub)
			if err != nil {
				return UsageError{err}
			}
			ek, err := devicesig.ParsePublicKey(string(raw))
			if err != nil {
				return usagef("--public-key %s: %v", pub, err)
			}
			if strings.Contains(tags, ",") {
				return usagef("--tags %q: separate tags with '|' (as in the CSV import and rollout selections)", tags)
			}
			if tags != "" {
				d.Tags = strings.Split(tags, "|")
			}
			d.PublicKey = devicesig.EncodePublicKey(ek)
			out, err := c.RegisterDevices(cmd.Context(), []api.Device{d})
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "device %s registered\n", d.ID) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&d.ID, "id", "", "device id (serial number)")
	f.StringVar(&d.UDIDI, "udi-di", "", "UDI device identifier")
	f.StringVar(&d.Product, "product", "", "product")
	f.StringVar(&d.Hardware, "hardware", "", "hardware revision")
	f.StringVar(&d.Site, "site", "", "site")
	f.StringVar(&d.CareArea, "care-area", "", "care area")
	f.StringVar(&tags, "tags", "", "tags, separated by '|' (e.g. ward-3|night-shift)")
	f.StringVar(&pub, "public-key", "", "the device's ed25519 public key file (PEM)")
	f.StringVar(&d.Installed, "installed-version", "", "factory version")
	return cmd
}

func newDeviceImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Register many devices from CSV, all or none",
		Long: "Columns: " + strings.Join([]string{"id", "udi_di", "product", "hardware", "site", "care_area", "tags", "public_key", "installed_version"}, ",") + `
(tags separated by '|'; public_key the PEM .pub file 'vigil keys generate' wrote, as a
quoted multi-line cell, or its base64 body on one line, or the base64 raw key). Every
row is checked; an error names its line and nothing is registered. Importing the same
file again changes nothing; a row that differs from its registered device is an error
naming the line and the field. docs/onboarding.md has an example file.`,
		Example: "  vigil device import devices.csv",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return UsageError{err}
			}
			out, err := c.ImportDevices(cmd.Context(), b)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "%d devices registered, %d already registered and unchanged\n", out.Registered, out.Unchanged)
			})
		},
	}
}

func newDeviceDecommissionCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:     "decommission ID",
		Short:   "Retire a device and revoke its key (irreversible; needs --yes)",
		Long:    "Retire a device: its key stops working at once and it gets nothing any more.",
		Example: "  vigil device decommission PUMP-0001 --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := confirm(yes, false, "decommissioning (the device's key is revoked for good)"); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.Decommission(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) { fmt.Fprintf(w, "device %s decommissioned\n", out.Decommissioned) })
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
