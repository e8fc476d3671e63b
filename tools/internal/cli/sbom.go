package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/offline"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

func newSBOMCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sbom",
		Short: "Attach, show, compare and scan releases' SBOMs",
		Long: `Every release should carry an SBOM (CycloneDX JSON 1.2 to 1.6): publish it with the
release ('vigil release publish --sbom FILE'), or attach one to a release published without
('vigil sbom attach'). The server indexes its components and matches them against the
vulnerability feeds ('vigil findings list').

Hospital IT reads 'vigil sbom diff' before approving a wave: what a release adds, removes
and upgrades. Release engineers and CI pipelines run 'vigil sbom scan' with no server.`,
		Example: "  vigil sbom diff demo-pump@1.0.0 demo-pump@1.1.0",
	}
	cmd.AddCommand(newSBOMAttachCmd(g), newSBOMShowCmd(g), newSBOMDiffCmd(g), newSBOMScanCmd(g))
	return cmd
}

// splitRelease parses PRODUCT@VERSION.
func splitRelease(s string) (string, string, error) {
	p, v, ok := strings.Cut(s, "@")
	if !ok || p == "" || v == "" {
		return "", "", usagef("%q is not PRODUCT@VERSION", s)
	}
	return p, v, nil
}

func newSBOMAttachCmd(g *globals) *cobra.Command {
	var o repoOptions
	var file string
	var keys []string
	cmd := &cobra.Command{
		Use:   "attach PRODUCT@VERSION --file SBOM.cdx.json",
		Short: "Publish an SBOM for a release that has none (signed with the product key)",
		Long: `Attach an SBOM to a published release: the SBOM must be CycloneDX JSON (1.2 to 1.6) and
describe the product (metadata.component.name) and, if it names one, the version. It is
uploaded and published as a signed target of the product role, like a release; the server
indexes it and matches it against the feeds. An SBOM, once published, cannot be replaced.`,
		Example: "  vigil sbom attach demo-pump@1.0.0 --file demo-pump-1.0.0.cdx.json --keys-dir KEYS",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			product, version, err := splitRelease(args[0])
			if err != nil {
				return err
			}
			if file == "" {
				return usagef("--file is required")
			}
			sess, err := o.session()
			if err != nil {
				return err
			}
			ks, err := o.keyset("key", keys, func(dir string) ([]string, error) { return repotool.ProductKeyFiles(dir, product), nil }, 0, "product keys")
			if err != nil {
				return err
			}
			res, err := sess.AttachSBOM(cmd.Context(), product, version, file, ks)
			if err != nil {
				return err
			}
			return g.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s SBOM %s for %s (sha256 %s)\n%s\n", dryWord(o.dryRun, "published"), res.SBOM, args[0], res.SHA256, versionLine(res.Versions))
			})
		},
	}
	o.register(cmd, g)
	cmd.Flags().StringVar(&file, "file", "", "the CycloneDX JSON SBOM (required)")
	cmd.Flags().StringArrayVar(&keys, "key", nil, "product private key file (repeat; default KEYS_DIR/product-PRODUCT.key)")
	return cmd
}

func newSBOMShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show PRODUCT@VERSION",
		Short:   "List a release's SBOM components",
		Example: "  vigil sbom show demo-pump@1.1.0",
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
			sb, err := c.SBOM(cmd.Context(), product, version)
			if err != nil {
				return err
			}
			return g.emit(sb, func(w io.Writer) {
				fmt.Fprintf(w, "%s: SBOM %s (CycloneDX %s, %d components, sha256 %s)\n", sb.Release, sb.Target, sb.SpecVersion, len(sb.Components), sb.SHA256)
				printComponents(w, "", sb.Components)
			})
		},
	}
}

func printComponents(w io.Writer, prefix string, cs []vigilance.Component) {
	for _, c := range cs {
		id := c.PURL
		if id == "" {
			id = c.CPE
		}
		fmt.Fprintf(w, "%s%-28s %-14s %s\n", prefix, c.Name, c.Version, id)
	}
}

func newSBOMDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff PRODUCT@FROM PRODUCT@TO",
		Short: "Components added, removed and upgraded between two releases",
		Long: `Compare two releases' SBOMs: components added, removed, and changed version. Two copies
of one library (a system OpenSSL and a statically linked one) pair up in version order.`,
		Example: "  vigil sbom diff demo-pump@1.0.0 demo-pump@1.1.0",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var sboms [2]api.SBOM
			for i, a := range args {
				product, version, err := splitRelease(a)
				if err != nil {
					return err
				}
				if sboms[i], err = c.SBOM(cmd.Context(), product, version); err != nil {
					return err
				}
			}
			d := vigilance.DiffSBOMs(sboms[0].Components, sboms[1].Components)
			return g.emit(d, func(w io.Writer) {
				fmt.Fprintf(w, "%s → %s: %d added, %d removed, %d changed\n", args[0], args[1], len(d.Added), len(d.Removed), len(d.Changed))
				printComponents(w, "+ ", d.Added)
				printComponents(w, "- ", d.Removed)
				for _, ch := range d.Changed {
					fmt.Fprintf(w, "~ %-28s %s → %s\n", ch.Name, ch.From, ch.To)
				}
			})
		},
	}
}

func newSBOMScanCmd(g *globals) *cobra.Command {
	var osvPath, nvdPath, kevPath, rel string
	var failOnKEV bool
	cmd := &cobra.Command{
		Use:   "scan SBOM.cdx.json --osv FEED --nvd FEED [--kev CATALOG]",
		Short: "Match an SBOM against feed files, offline (no server)",
		Long: `Scan an SBOM against vulnerability feeds on disk, with the server's matching rules:
--osv an OSV zip (osv.dev's per-ecosystem all.zip), directory or file; --nvd NVD CVE API 2.0
records (a directory, a file, or an API page); --kev the CISA KEV catalog. The findings have
the shape 'vigil findings list -o json' prints.

Exit codes: 0 no finding (or findings without --fail-on-kev), 1 findings with a KEV-listed
vulnerability under --fail-on-kev, 2 bad input.`,
		Example: "  vigil sbom scan demo-pump-1.1.0.cdx.json --nvd nvd/ --osv go-all.zip --kev kev.json -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if osvPath == "" && nvdPath == "" {
				return usagef("give at least one feed: --osv or --nvd")
			}
			f, err := os.Open(args[0])
			if err != nil {
				return UsageError{err}
			}
			defer f.Close()
			doc, err := sbom.Parse(f)
			if err != nil {
				return usagef("%s: %v", args[0], err)
			}
			feeds, err := offline.Load(osvPath, nvdPath, kevPath)
			if err != nil {
				return UsageError{err}
			}
			return emitScan(g, feeds, doc, rel, failOnKEV)
		},
	}
	cmd.Flags().StringVar(&osvPath, "osv", "", "OSV feed: zip, directory or file")
	cmd.Flags().StringVar(&nvdPath, "nvd", "", "NVD feed: directory, file or API page")
	cmd.Flags().StringVar(&kevPath, "kev", "", "CISA KEV catalog (known_exploited_vulnerabilities.json)")
	cmd.Flags().StringVar(&rel, "release", "", "name the release in findings (default PRODUCT@VERSION from the SBOM)")
	cmd.Flags().BoolVar(&failOnKEV, "fail-on-kev", false, "exit 1 when a finding is KEV-listed (for CI pipelines)")
	return cmd
}

// ScanResult is what `sbom scan` prints with -o json.
type ScanResult struct {
	Release  string              `json:"release"`
	Findings []vigilance.Finding `json:"findings"`
	Skipped  []api.Skipped       `json:"skipped"`
}

func emitScan(g *globals, feeds *offline.Feeds, doc *sbom.SBOM, rel string, failOnKEV bool) error {
	if rel == "" {
		rel = doc.Product + "@" + strings.TrimPrefix(doc.Version, "v")
	}
	res := ScanResult{Release: rel, Findings: feeds.Scan(rel, doc.Components), Skipped: []api.Skipped{}}
	if res.Findings == nil {
		res.Findings = []vigilance.Finding{}
	}
	for _, s := range feeds.Skipped {
		res.Skipped = append(res.Skipped, api.Skipped{File: s.File, ID: s.ID, Error: s.Err.Error()})
	}
	kevs := 0
	for _, f := range res.Findings {
		if f.KEV {
			kevs++
		}
	}
	err := g.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %d components, %d findings (%d KEV-listed)\n", rel, len(doc.Components), len(res.Findings), kevs)
		printFindingRows(w, res.Findings)
		for _, s := range res.Skipped {
			fmt.Fprintf(w, "skipped malformed record %s in %s: %s\n", s.ID, s.File, s.Error)
		}
	})
	if err == nil && failOnKEV && kevs > 0 {
		return fmt.Errorf("%d KEV-listed vulnerabilities in %s", kevs, rel)
	}
	return err
}

func printFindingRows(w io.Writer, fs []vigilance.Finding) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(w, "%-19s %-20s %-4s %-28s %s\n", "ID", "VULNERABILITY", "KEV", "COMPONENT", "CVEs")
	for _, f := range fs {
		fmt.Fprintf(w, "%-19s %-20s %-4s %-28s %s\n", f.ID, f.VulnerabilityID, yesNo(f.KEV, f.KEVRelated), f.Component.Name+" "+f.Component.Version, strings.Join(f.CVEs, ","))
	}
}

// yesNo shows a KEV flag, and a KEV id reached only through related ids
// as such.
func yesNo(kev bool, related []string) string {
	switch {
	case kev:
		return "yes"
	case len(related) > 0:
		return "rel"
	}
	return "-"
}
