package cli

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
)

func newFeedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "feed",
		Short: "Import vulnerability feeds (OSV, NVD, CISA KEV) and see what is imported",
		Long: `The server matches every release's SBOM against the vulnerability feeds it holds. Import
them from files here, or let the server fetch them on a schedule (its feeds setting).
Imports are idempotent and incremental: an unchanged record is not rewritten, so running
the same import again is cheap. A malformed record is skipped and reported; the rest is
imported.`,
		Example: "  vigil feed import --kev known_exploited_vulnerabilities.json --nvd nvd/ --osv go-all.zip",
	}
	cmd.AddCommand(newFeedImportCmd(g), newFeedStatusCmd(g))
	return cmd
}

func newFeedImportCmd(g *globals) *cobra.Command {
	var osvPath, nvdPath, kevPath string
	cmd := &cobra.Command{
		Use:   "import [--kev FILE] [--nvd FILE|DIR] [--osv FILE.zip|DIR|FILE.json]",
		Short: "Import feed files into the server",
		Long: `Import feeds, in the order KEV, NVD, OSV (so new findings get their KEV listing and CVSS
scores at once):
  --osv  OSV records: osv.dev's per-ecosystem all.zip, a directory of .json, or one record
  --nvd  NVD CVE API 2.0: a directory of cve objects (one per file), a file, or API pages
  --kev  CISA's known_exploited_vulnerabilities.json
A directory is zipped on the fly and sent as one upload.`,
		Example: "  vigil feed import --osv go-all.zip\n  vigil feed import --nvd nvd-json-data-feeds/CVE-2024 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if osvPath == "" && nvdPath == "" && kevPath == "" {
				return usagef("give at least one of --osv, --nvd, --kev")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var reps []api.ImportReport
			for _, f := range []struct{ kind, path string }{{api.FeedKEV, kevPath}, {api.FeedNVD, nvdPath}, {api.FeedOSV, osvPath}} {
				if f.path == "" {
					continue
				}
				rep, err := importOne(cmd, c, f.kind, f.path)
				if err != nil {
					return fmt.Errorf("%s feed %s: %w", f.kind, f.path, err)
				}
				reps = append(reps, rep)
			}
			return g.emit(reps, func(w io.Writer) {
				for _, r := range reps {
					printImport(w, r)
				}
			})
		},
	}
	cmd.Flags().StringVar(&osvPath, "osv", "", "OSV feed: a zip, a directory of .json files, or one .json file")
	cmd.Flags().StringVar(&nvdPath, "nvd", "", "NVD feed: a directory, a cve file, or an API page")
	cmd.Flags().StringVar(&kevPath, "kev", "", "CISA KEV catalog file")
	return cmd
}

func printImport(w io.Writer, r api.ImportReport) {
	fmt.Fprintf(w, "%s: %d records from %d files: %d new, %d changed, %d unchanged, %d withdrawn, %d skipped; findings %d opened, %d closed (%.1f s)",
		r.Kind, r.Records, r.Files, r.New, r.Changed, r.Unchanged, r.Withdrawn, len(r.Skipped), r.FindingsOpened, r.FindingsClosed, float64(r.Millis)/1000)
	if r.KEVVersion != "" {
		fmt.Fprintf(w, "; catalog %s", r.KEVVersion)
	}
	fmt.Fprintln(w)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  skipped %s %s: %s\n", s.File, s.ID, s.Error)
	}
}

// importOne uploads one feed path: a file as it is, a directory as a zip
// of its .json files (built in a temporary file, streamed).
func importOne(cmd *cobra.Command, c *client.Client, kind, path string) (api.ImportReport, error) {
	st, err := os.Stat(path)
	if err != nil {
		return api.ImportReport{}, UsageError{err}
	}
	file := path
	if st.IsDir() {
		if kind == api.FeedKEV {
			return api.ImportReport{}, usagef("--kev takes the catalog file, not a directory")
		}
		if file, err = zipDir(path); err != nil {
			return api.ImportReport{}, err
		}
		defer os.Remove(file)
	}
	f, err := os.Open(file)
	if err != nil {
		return api.ImportReport{}, err
	}
	defer f.Close()
	fst, err := f.Stat()
	if err != nil {
		return api.ImportReport{}, err
	}
	return c.ImportFeed(cmd.Context(), kind, f, fst.Size())
}

// zipDir writes the .json files under dir (regular files, no links) to a
// temporary zip and returns its path.
func zipDir(dir string) (string, error) {
	tmp, err := os.CreateTemp("", "vigil-feed-*.zip")
	if err != nil {
		return "", err
	}
	zw := zip.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(strings.ToLower(d.Name()), ".json") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(w, src)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

func newFeedStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "What the server holds, and its scheduled feeds' last fetches",
		Example: "  vigil feed status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.Feeds(cmd.Context())
			if err != nil {
				return err
			}
			return g.emit(st, func(w io.Writer) {
				fmt.Fprintf(w, "records: osv %d, nvd %d; KEV catalog %q with %d entries\n", st.Records["osv"], st.Records["nvd"], st.KEVVersion, st.KEVEntries)
				for _, s := range st.Scheduled {
					fmt.Fprintf(w, "scheduled %s every %s: last fetch %s, last success %s: %s\n", s.Name, s.Interval, when(s.Fetched), when(s.Succeeded), s.Message)
				}
			})
		},
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func newFindingsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "findings",
		Aliases: []string{"finding"},
		Short:   "Vulnerabilities found in releases: list, show, triage, overdue clocks",
		Long: `A finding is one vulnerability in one component of one release. It shows the devices that
run the release now (by site), the release that fixes it and that release's rollouts.

Triage each finding: a controlled risk (residual risk acceptable) or an uncontrolled one. For
an uncontrolled risk the clocks of FDA's 2016 postmarket guidance run from the awareness
date (the import that found it): customers told within 30 days, the fix deployed (95% of the
exposed devices on a fixing release) within 60. 'vigil findings overdue' lists the late ones.`,
		Example: "  vigil findings list --kev\n  vigil finding triage F-1a2b… --risk uncontrolled --rationale \"reachable from the network\"",
	}
	cmd.AddCommand(newFindingsListCmd(g), newFindingsShowCmd(g), newFindingsOverdueCmd(g), newFindingTriageCmd(g))
	return cmd
}

func newFindingsListCmd(g *globals) *cobra.Command {
	var q client.FindingQuery
	cmd := &cobra.Command{
		Use:     "list [--product P] [--release P@V] [--site S] [--kev] [--status open|closed|all]",
		Short:   "List findings",
		Example: "  vigil findings list --release demo-pump@1.0.0 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if q.Status == "all" {
				q.Status = ""
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Findings(cmd.Context(), q)
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) { printFindingList(w, l) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Product, "product", "", "only this product")
	f.StringVar(&q.Release, "release", "", "only this release, PRODUCT@VERSION")
	f.StringVar(&q.Site, "site", "", "only releases that devices at this site run")
	f.BoolVar(&q.KEV, "kev", false, "only KEV-listed (known exploited) vulnerabilities")
	f.StringVar(&q.Status, "status", "open", "open, closed or all")
	f.IntVar(&q.Limit, "limit", 0, "at most this many (0: the server's limit)")
	return cmd
}

func printFindingList(w io.Writer, l api.FindingList) {
	fmt.Fprintf(w, "%-19s %-20s %-4s %-18s %-24s %-12s %-7s %-7s %s\n", "ID", "VULNERABILITY", "KEV", "RELEASE", "COMPONENT", "RISK", "STATUS", "DEVICES", "FIXED IN")
	for _, f := range l.Findings {
		fix := "-"
		if f.FixingRelease != nil {
			fix = f.FixingRelease.Release
		}
		fmt.Fprintf(w, "%-19s %-20s %-4s %-18s %-24s %-12s %-7s %-7d %s\n", f.ID, f.VulnerabilityID, yesNo(f.KEV, f.KEVRelated), f.Release,
			f.Component.Name+" "+f.Component.Version, f.Risk, f.Status, f.DevicesTotal, fix)
	}
	fmt.Fprintf(w, "%d finding(s)\n", len(l.Findings))
	if len(l.ReleasesWithoutSBOM) > 0 {
		fmt.Fprintf(w, "%d release(s) without an SBOM (their vulnerabilities are unknown): %s\n", len(l.ReleasesWithoutSBOM), strings.Join(l.ReleasesWithoutSBOM, ", "))
	}
}

func newFindingsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one finding: vulnerability, component, devices, fix, triage, clocks",
		Example: "  vigil findings show F-1a2b3c4d5e6f7a8b",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := c.Finding(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(f, func(w io.Writer) { printFinding(w, f) })
		},
	}
}

func printFinding(w io.Writer, f api.FindingDetail) {
	fmt.Fprintf(w, "finding:        %s (%s", f.ID, f.Status)
	if f.ClosedReason != "" {
		fmt.Fprintf(w, ": %s", f.ClosedReason)
	}
	fmt.Fprintf(w, ")\nvulnerability:  %s (%s) %s\naliases:        %s\nsummary:        %s\n", f.VulnerabilityID, f.Source, strings.Join(f.CVEs, ","), orDash(strings.Join(f.Aliases, ", ")), f.Summary)
	if f.KEVEntry != nil {
		fmt.Fprintf(w, "KEV:            listed %s, due %s, ransomware use %s\n", f.KEVEntry.DateAdded, f.KEVEntry.DueDate, f.KEVEntry.RansomwareCampaign)
	} else if len(f.KEVRelated) > 0 {
		fmt.Fprintf(w, "KEV:            not listed; related ids are: %s\n", strings.Join(f.KEVRelated, ", "))
	}
	for _, c := range f.CVSS {
		fmt.Fprintf(w, "CVSS %-4s       %.1f %s (%s)\n", c.Version, c.BaseScore, c.Vector, c.Source)
	}
	fmt.Fprintf(w, "release:        %s\ncomponent:      %s %s %s %s\n", f.Release, f.Component.Name, f.Component.Version, f.Component.PURL, f.Component.CPE)
	fmt.Fprintf(w, "affected:       %s\n", strings.Join(f.AffectedReleases, ", "))
	fmt.Fprintf(w, "devices:        %d", f.DevicesTotal)
	for _, s := range f.Devices {
		fmt.Fprintf(w, "  %s=%d", s.Site, s.Count)
	}
	fmt.Fprintln(w)
	if f.FixingRelease != nil {
		fmt.Fprintf(w, "fixing release: %s (%d devices run it)\n", f.FixingRelease.Release, f.FixingRelease.Committed)
		for _, r := range f.FixingRelease.Rollouts {
			fmt.Fprintf(w, "  rollout %s %s: %d of %d committed\n", r.ID, r.State, r.Committed, r.Eligible)
		}
	} else {
		fmt.Fprintln(w, "fixing release: none yet")
	}
	fmt.Fprintf(w, "aware:          %s %s\ntriage:         %s %s %s by %s: %s\n", when(f.Aware), f.AwareReason, f.Triage.Risk, f.Triage.VEXStatus, f.Triage.Justification,
		orDash(f.Triage.By), f.Triage.Rationale)
	if k := f.Clocks; k != nil {
		fmt.Fprintf(w, "notice clock:   due %s, notified %s\nfix clock:      due %s, deployed %s (%d remediated, %d exposed)\noverdue:        %s\n",
			when(k.NoticeDue), when(k.Notified), when(k.FixDue), when(k.FixDeployed), k.Remediated, k.Exposed, orDash(strings.Join(k.Overdue, ", ")))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newFindingsOverdueCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "overdue",
		Short:   "Uncontrolled findings whose notice or fix clock is past due",
		Example: "  vigil findings overdue",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Overdue(cmd.Context())
			if err != nil {
				return err
			}
			return g.emit(l, func(w io.Writer) {
				for _, f := range l.Findings {
					fmt.Fprintf(w, "%s %s %s: overdue %s (aware %s; notice due %s; fix due %s)\n", f.ID, f.VulnerabilityID, f.Release,
						strings.Join(f.Clocks.Overdue, ", "), when(f.Aware), when(f.Clocks.NoticeDue), when(f.Clocks.FixDue))
				}
				fmt.Fprintf(w, "%d overdue finding(s)\n", len(l.Findings))
			})
		},
	}
}

type triageOptions struct {
	in              api.Triage
	aware, notified string
}

// parseWhen reads RFC 3339, a date (YYYY-MM-DD, midnight UTC) or "now".
func parseWhen(flag, v string) (time.Time, error) {
	switch {
	case v == "":
		return time.Time{}, nil
	case v == "now":
		return time.Now().UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q is not RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30) or now", flag, v)
}

func newFindingTriageCmd(g *globals) *cobra.Command {
	o := &triageOptions{}
	cmd := &cobra.Command{
		Use:   "triage ID --risk controlled|uncontrolled --rationale TEXT",
		Short: "Record a finding's triage (audited)",
		Long: `Record the triage of a finding; every change is in the audit log with what it replaced.

  --risk           controlled (routine improvement, no clocks) or uncontrolled (clocks run)
  --rationale      why (required)
  --vex-status     not_affected (with --justification), affected (with --action), fixed,
                   under_investigation: what 'vigil vex export' states for the release
  --justification  component_not_present, vulnerable_code_not_present,
                   vulnerable_code_not_in_execute_path,
                   vulnerable_code_cannot_be_controlled_by_adversary,
                   inline_mitigations_already_exist
  --aware          correct the awareness date the clocks run from (needs --aware-reason)
  --customer-notified  when customers were told (stops the 30-day notice clock)`,
		Example: `  vigil finding triage F-1a2b3c4d5e6f7a8b --risk uncontrolled --rationale "telemetryd is reachable from the hospital network" \
      --vex-status affected --action "update to 1.1.0"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.in.Aware, err = parseWhen("aware", o.aware); err != nil {
				return err
			}
			if o.in.Notified, err = parseWhen("customer-notified", o.notified); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := c.Triage(cmd.Context(), args[0], o.in)
			if err != nil {
				return err
			}
			return g.emit(f, func(w io.Writer) { printFinding(w, f) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.in.Risk, "risk", "", "controlled or uncontrolled (required)")
	fl.StringVar(&o.in.Rationale, "rationale", "", "why (required)")
	fl.StringVar(&o.in.VEXStatus, "vex-status", "", "not_affected, affected, fixed or under_investigation")
	fl.StringVar(&o.in.Justification, "justification", "", "why not affected (with --vex-status not_affected)")
	fl.StringVar(&o.in.Action, "action", "", "what users should do (with --vex-status affected)")
	fl.StringVar(&o.aware, "aware", "", "corrected awareness date (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&o.in.AwareReason, "aware-reason", "", "why the awareness date is corrected")
	fl.StringVar(&o.notified, "customer-notified", "", "when customers were notified (RFC 3339, YYYY-MM-DD or now)")
	return cmd
}

func newExposureCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exposure VULNERABILITY-ID",
		Short: "Where a vulnerability runs: sites × releases × devices, and the fixing release",
		Long: `Answer the morning's question for a CVE (or an OSV/GHSA id, or any alias): which releases
carry it, how many devices at which sites run them, and which release fixes it. A site-it
token sees its own sites.`,
		Example: "  vigil exposure CVE-2014-0160",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			e, err := c.Exposure(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.emit(e, func(w io.Writer) { printExposure(w, e) })
		},
	}
}

func printExposure(w io.Writer, e api.Exposure) {
	kev := ""
	if e.KEV {
		kev = " (KEV-listed: known exploited)"
	}
	fmt.Fprintf(w, "%s%s, known as %s\n", e.Vulnerability, kev, strings.Join(e.IDs, ", "))
	fmt.Fprintf(w, "%-20s %-24s %s\n", "SITE", "RELEASE", "DEVICES")
	for _, r := range e.Rows {
		fmt.Fprintf(w, "%-20s %-24s %d\n", r.Site, r.Release, r.Devices)
	}
	fmt.Fprintf(w, "total: %d device(s)\n", e.Total)
	for p, v := range e.Fixing {
		fmt.Fprintf(w, "fixing release of %s: %s\n", p, orDash(v))
	}
	if len(e.ReleasesWithoutSBOM) > 0 {
		fmt.Fprintf(w, "devices also run releases without an SBOM (exposure unknown): %s\n", strings.Join(e.ReleasesWithoutSBOM, ", "))
	}
}

func newVEXCmd(g *globals) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "vex",
		Short: "Export a release's VEX document",
	}
	export := &cobra.Command{
		Use:   "export PRODUCT@VERSION [--format cyclonedx|openvex] [--out FILE]",
		Short: "One VEX statement per open finding of the release, from its triage",
		Long: `Export the release's VEX: CycloneDX 1.6 (analysis state, justification, response) or
OpenVEX (status, justification, action statement). An untriaged finding is stated as
under investigation (in_triage).`,
		Example: "  vigil vex export demo-pump@1.0.0 --format openvex --out demo-pump-1.0.0.vex.json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			product, version, err := splitRelease(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			doc, err := c.VEX(cmd.Context(), product, version, format)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = g.stdout.Write(append(doc, '\n'))
				return err
			}
			return os.WriteFile(out, doc, 0o644)
		},
	}
	export.Flags().StringVar(&format, "format", api.VEXFormatCycloneDX, "cyclonedx or openvex")
	export.Flags().StringVar(&out, "out", "", "write to this file (default: standard output)")
	cmd.AddCommand(export)
	return cmd
}
