package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

func newReleaseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "release",
		Short:   "Publish and inspect signed releases",
		Long:    "Publish patches as signed releases, list and show what is published (verified through TUF),\nand halt every rollout of a release in an emergency.",
		Example: "  vigil release list --keys-dir ./keys",
	}
	cmd.AddCommand(newReleasePublishCmd(g), newReleaseListCmd(g), newReleaseShowCmd(g), newReleaseHaltCmd(g), newReleaseRevokeCmd(g))
	return cmd
}

type publishOptions struct {
	repoOptions
	product, version, file, name string
	hardware, downgradeFrom      string
	minFrom, severity, cycle     string
	notesFile                    string
	keys                         []string
	sbom                         string
	accept                       []string
	reason                       string
	incident                     string
	deltaFrom                    string
	deltaFromLast                int
}

func (o *publishOptions) custom(cycleSet bool) (release.Custom, error) {
	c := release.Custom{
		Product: o.product, Version: o.version, Hardware: repotool.SplitList(o.hardware),
		MinFromVersion: o.minFrom, Kind: release.KindFull, Severity: o.severity, Cycle: o.cycle,
		DowngradeFrom: repotool.SplitList(o.downgradeFrom),
	}
	if o.notesFile != "" {
		b, err := os.ReadFile(o.notesFile)
		if err != nil {
			return c, err
		}
		c.Notes = strings.TrimSpace(string(b))
	}
	if o.severity == release.SeverityCritical && !cycleSet {
		c.Cycle = release.CycleOutOfCycle // critical patches go out of cycle unless told otherwise
	}
	return c, c.Validate(o.product)
}

func newReleasePublishCmd(g *globals) *cobra.Command {
	o := &publishOptions{}
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Upload an image and publish it as a signed release",
		Long: `Publish IMAGE as version VERSION of product PRODUCT:

  1. the image is hashed and streamed to the server (never held in memory);
  2. the next version of the product role is built with the new target and its
     signed release fields (product, version, hardware, min_from_version,
     severity, cycle, downgrade_from, notes, and for archives unpacked_length);
  3. it is signed here with the product key(s) and submitted; the server checks
     it and publishes a new snapshot and timestamp.

With --sbom, the release's CycloneDX JSON SBOM is checked here (it must describe
the product and version), uploaded and published as a signed target beside the
image, which names it (custom.sbom, custom.sbom_sha256). The server matches it
against its vulnerability feeds first and refuses a release that still carries a
KEV-listed (known exploited) vulnerability, unless you accept each one with
--accept-known-vulnerability ID --reason TEXT (recorded in the audit log).

With --delta-from VERSIONS (or --delta-from-last N), a delta is made from each
published image named (downloaded and verified through TUF) to this one and
published as a signed target beside it (custom.kind delta, delta_base_sha256,
result_sha256, result_length). A device running one of those images rebuilds
this image from the delta, checks it against this image's signed hash and
falls back to the full image by itself when anything is off. A delta over half
the image's size is not published (a warning says so). docs/delta.md has the
method and the trust argument.

Devices install a release only if it is for their product and hardware, newer
than what they run (or a signed recall naming their version in
--downgrade-from), and their version is at least --min-from-version.`,
		Example: `  vigil release publish --product demo-pump --version 1.1.0 --file pump.img \
      --hardware rev-b,rev-c --severity security --sbom demo-pump-1.1.0.cdx.json --keys-dir KEYS
  vigil release publish --product demo-pump --version 1.1.1 --file pump.img \
      --hardware rev-b --severity security --delta-from-last 2 --keys-dir KEYS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return publish(cmd, g, o) },
	}
	o.register(cmd, g)
	f := cmd.Flags()
	f.StringVar(&o.product, "product", "", "product (role) name (required)")
	f.StringVar(&o.version, "version", "", "release version, semantic versioning (required)")
	f.StringVar(&o.file, "file", "", "the image to publish (required)")
	f.StringVar(&o.name, "name", "", "target file name (default PRODUCT-VERSION.EXT)")
	f.StringVar(&o.hardware, "hardware", "", "compatible hardware revisions, comma-separated (required)")
	f.StringVar(&o.minFrom, "min-from-version", "", "oldest installed version this release may be installed over")
	f.StringVar(&o.severity, "severity", release.SeverityRoutine, "routine, security or critical")
	f.StringVar(&o.cycle, "cycle", release.CycleRegular, "regular or out-of-cycle (critical defaults to out-of-cycle)")
	f.StringVar(&o.downgradeFrom, "downgrade-from", "", "signed recall: installed versions this older release may replace, comma-separated")
	f.StringVar(&o.notesFile, "notes", "", "file with release notes (at most 4 KiB)")
	f.StringArrayVar(&o.keys, "key", nil, "product private key file (repeat; default KEYS_DIR/product-PRODUCT.key)")
	f.StringVar(&o.sbom, "sbom", "", "the release's CycloneDX JSON SBOM (1.2 to 1.6), published beside the image")
	f.StringArrayVar(&o.accept, "accept-known-vulnerability", nil, "publish although the SBOM carries this KEV-listed vulnerability (repeat; needs --reason; audited)")
	f.StringVar(&o.reason, "reason", "", "why the known exploited vulnerabilities are accepted (or why this release is published: a fix, a recall)")
	f.StringVar(&o.incident, "incident", "", "the incident this release answers (a fix or a signed recall): it joins the incident's timeline")
	f.StringVar(&o.deltaFrom, "delta-from", "", "published versions to make deltas from, comma-separated")
	f.IntVar(&o.deltaFromLast, "delta-from-last", 0, fmt.Sprintf("also make deltas from the newest N older full releases (at most %d bases in all)", repotool.MaxDeltaBases))
	return cmd
}

// accepted turns --accept-known-vulnerability and --reason into the
// submission's acceptances.
func (o *publishOptions) accepted() ([]api.AcceptedVulnerability, error) {
	if len(o.accept) == 0 {
		if o.reason != "" && o.incident == "" {
			return nil, usagef("--reason goes with --accept-known-vulnerability or --incident")
		}
		return nil, nil
	}
	if o.sbom == "" {
		return nil, usagef("--accept-known-vulnerability needs --sbom: it accepts what the SBOM carries")
	}
	if strings.TrimSpace(o.reason) == "" {
		return nil, usagef("--accept-known-vulnerability needs --reason (recorded in the audit log)")
	}
	out := make([]api.AcceptedVulnerability, 0, len(o.accept))
	for _, id := range o.accept {
		out = append(out, api.AcceptedVulnerability{ID: id, Reason: o.reason})
	}
	return out, nil
}

func publish(cmd *cobra.Command, g *globals, o *publishOptions) error {
	sess, err := o.session()
	if err != nil {
		return err
	}
	if o.product == "" || o.version == "" || o.file == "" {
		return usagef("--product, --version and --file are required")
	}
	if err := release.ValidateProduct(o.product); err != nil {
		return UsageError{err}
	}
	if st, err := os.Stat(o.file); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return usagef("--file %q is not a non-empty regular file", o.file)
	}
	c, err := o.custom(cmd.Flags().Changed("cycle"))
	if err != nil {
		return UsageError{err}
	}
	keys, err := o.keyset("key", o.keys, func(dir string) ([]string, error) { return repotool.ProductKeyFiles(dir, o.product), nil }, 0, "product keys")
	if err != nil {
		return err
	}
	accept, err := o.accepted()
	if err != nil {
		return err
	}
	if o.deltaFromLast < 0 || o.deltaFromLast > repotool.MaxDeltaBases {
		return usagef("--delta-from-last %d is not between 0 and %d", o.deltaFromLast, repotool.MaxDeltaBases)
	}
	deltaFrom := repotool.SplitList(o.deltaFrom)
	for _, v := range deltaFrom {
		if err := release.ValidateVersion(v); err != nil {
			return usagef("--delta-from: %v", err)
		}
	}
	res, err := sess.Publish(cmd.Context(), repotool.PublishOptions{Product: o.product, File: o.file, Name: o.name, Custom: c, Keys: keys, SBOM: o.sbom, Accept: accept, Incident: o.incident, Reason: o.reason,
		DeltaFrom: deltaFrom, DeltaFromLast: o.deltaFromLast})
	if err != nil {
		return err
	}
	return g.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "%s %s (%d bytes, sha256 %s)\n", dryWord(o.dryRun, "published"), res.Target, res.Length, res.SHA256)
		for _, warn := range res.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
		for _, d := range res.Deltas {
			fmt.Fprintf(w, "delta %s from %s (%d bytes, %.1f%% of the image)\n", d.Target, d.BaseVersion, d.Length, 100*d.Share)
		}
		if res.SBOM != "" {
			fmt.Fprintf(w, "SBOM %s\n", res.SBOM)
		} else {
			fmt.Fprintln(w, "no SBOM: the release's vulnerabilities stay unknown until one is attached (vigil sbom attach)")
		}
		fmt.Fprintln(w, versionLine(res.Versions))
	})
}

func newReleaseListCmd(g *globals) *cobra.Command {
	var o repoOptions
	var product string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List published releases, verified through TUF",
		Long:    "List the releases the repository publishes, read through TUF from the trusted root (a\ncompromised server cannot show releases that were never signed).",
		Example: "  vigil release list --product demo-pump --keys-dir ./keys",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sess, err := o.session()
			if err != nil {
				return err
			}
			var products []string
			if product != "" {
				products = []string{product}
			}
			list, err := sess.Releases(products)
			if err != nil {
				return err
			}
			return g.emit(list, func(w io.Writer) {
				fmt.Fprintf(w, "%-16s %-12s %-9s %-12s %-5s %s\n", "PRODUCT", "VERSION", "SEVERITY", "HARDWARE", "SBOM", "TARGET")
				for _, r := range list {
					fmt.Fprintf(w, "%-16s %-12s %-9s %-12s %-5s %s\n", r.Product, r.Version, r.Custom.Severity, strings.Join(r.Custom.Hardware, ","), sbomWord(r.SBOM), r.Target)
				}
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringVar(&product, "product", "", "only this product")
	return cmd
}

func newReleaseShowCmd(g *globals) *cobra.Command {
	var o repoOptions
	cmd := &cobra.Command{
		Use:     "show PRODUCT VERSION",
		Short:   "Show one release's signed fields",
		Long:    "Show the signed release fields of one release, verified through TUF.",
		Example: "  vigil release show demo-pump 1.1.0 --keys-dir ./keys",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sess, err := o.session()
			if err != nil {
				return err
			}
			list, err := sess.Releases([]string{args[0]})
			if err != nil {
				return err
			}
			for _, r := range list {
				if r.Version == args[1] {
					return g.emit(r, func(w io.Writer) { printRelease(w, r) })
				}
			}
			return fmt.Errorf("%s has no release %s", args[0], args[1])
		},
	}
	o.register(cmd, g)
	return cmd
}

func printRelease(w io.Writer, r repotool.ReleaseInfo) {
	c := r.Custom
	fmt.Fprintf(w, "product:          %s\nversion:          %s\ntarget:           %s\nsha256:           %s\nlength:           %d\n", c.Product, c.Version, r.Target, r.SHA256, r.Length)
	fmt.Fprintf(w, "hardware:         %s\nmin_from_version: %s\nseverity:         %s\ncycle:            %s\ndowngrade_from:   %s\n",
		strings.Join(c.Hardware, ","), c.MinFromVersion, c.Severity, c.Cycle, strings.Join(c.DowngradeFrom, ","))
	if c.UnpackedLength > 0 {
		fmt.Fprintf(w, "unpacked_length:  %d\n", c.UnpackedLength)
	}
	fmt.Fprintf(w, "sbom:             %s\n", orDash(r.SBOM))
	fmt.Fprintf(w, "notes:            %s\n", c.Notes)
}

func sbomWord(path string) string {
	if path == "" {
		return "none"
	}
	return "yes"
}

func newReleaseHaltCmd(g *globals) *cobra.Command {
	var reason string
	var yes bool
	cmd := &cobra.Command{
		Use:     "halt PRODUCT@VERSION",
		Short:   "Emergency halt of every rollout of a release (needs --yes)",
		Long:    "Halt every active or paused rollout of a release at once: no device gets it from them\nany more. The reason goes to the audit log. Resume a rollout with 'vigil rollout resume'.",
		Example: `  vigil release halt demo-pump@1.2.0 --reason "field report FR-88" --yes`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := confirm(yes, false, "halting every rollout of "+args[0]); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.HaltRelease(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return g.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "halted %d rollout(s) of %s: %s\n", len(out.Halted), args[0], strings.Join(out.Halted, " "))
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit log)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
