package cli

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

type checkOptions struct {
	server, trustedRoot, dataDir string
	product, hardware, installed string
	target                       string
	download                     bool
}

// CheckResult is what `check` prints.
type CheckResult struct {
	Installable *ReleaseJSON   `json:"installable"`
	Refused     []RefusedJSON  `json:"refused,omitempty"`
	Downloaded  string         `json:"downloaded,omitempty"`
	Download    *DownloadStats `json:"download,omitempty"`
}

// ReleaseJSON is a release in check's output.
type ReleaseJSON struct {
	Target  string          `json:"target"`
	SHA256  string          `json:"sha256"`
	Length  int64           `json:"length"`
	Release *release.Custom `json:"release"`
}

// RefusedJSON is a release check refused, with the check that refused it.
type RefusedJSON struct {
	Target  string `json:"target"`
	Version string `json:"version"`
	Check   string `json:"check"`
	Reason  string `json:"reason"`
}

// DownloadStats reports a download.
type DownloadStats struct {
	Bytes   int64 `json:"bytes"`
	Resumed int64 `json:"resumed"`
}

func newCheckCmd(emit func(any, func(io.Writer)) error) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Find, verify and optionally download the newest installable release",
		Long: `Refresh the repository's metadata through TUF (anchored at the trusted root;
the newest verified root is kept in DATA_DIR/tuf), list the product's
releases, and print the newest one this device may install: same product,
hardware listed, newer than the installed version (or a signed recall naming
it), installed version at least min_from_version.

--target PATH checks one given target instead (as an assignment from the
server names it); a refused target exits 3 naming the check.
--download fetches the release into DATA_DIR/downloads, streaming, resuming a
partial download, and keeps it only if its length and sha256 match the signed
ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd.Context(), o, emit) },
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "vigil-server (or mirror) URL serving /repo/ (required)")
	f.StringVar(&o.trustedRoot, "trusted-root", "", "root metadata to trust on first start (required)")
	f.StringVar(&o.dataDir, "data-dir", "", "the agent's data directory (required)")
	f.StringVar(&o.product, "product", "", "this device's product (required)")
	f.StringVar(&o.hardware, "hardware", "", "this device's hardware revision (required)")
	f.StringVar(&o.installed, "installed-version", "", "the version installed now (required)")
	f.StringVar(&o.target, "target", "", "check this target path only")
	f.BoolVar(&o.download, "download", false, "download and verify the release")
	return cmd
}

func runCheck(ctx context.Context, o *checkOptions, emit func(any, func(io.Writer)) error) error {
	for name, v := range map[string]string{"--server": o.server, "--trusted-root": o.trustedRoot, "--data-dir": o.dataDir, "--product": o.product, "--hardware": o.hardware, "--installed-version": o.installed} {
		if v == "" {
			return usagef("%s is required", name)
		}
	}
	if err := release.ValidateVersion(o.installed); err != nil {
		return usageError{fmt.Errorf("--installed-version: %w", err)}
	}
	root, err := os.ReadFile(o.trustedRoot)
	if err != nil {
		return usageError{fmt.Errorf("--trusted-root: %w", err)}
	}
	mu, tu := tufclient.RepoURLs(o.server)
	tc, err := tufclient.Refresh(tufclient.Config{MetadataURL: mu, TargetsURL: tu, Dir: filepath.Join(o.dataDir, "tuf"), BootstrapRoot: root})
	if err != nil {
		return err
	}
	dev := release.Device{Product: o.product, Hardware: o.hardware, InstalledVersion: o.installed}
	sel, err := engine.Select(tc, dev, o.target, nil)
	if err != nil {
		return err
	}
	if sel.Refused != nil {
		return refusedError{sel.Refused}
	}
	var res CheckResult
	chosen := sel.Chosen
	if o.target == "" {
		for _, c := range sel.Considered {
			if c.Refusal != nil {
				res.Refused = append(res.Refused, RefusedJSON{Target: c.Path, Version: c.Custom.Version, Check: c.Refusal.Check, Reason: c.Refusal.Reason})
			}
		}
	}
	if chosen != nil {
		res.Installable = &ReleaseJSON{Target: chosen.Path, SHA256: hex.EncodeToString(chosen.Target.Hashes["sha256"]), Length: chosen.Target.Length, Release: chosen.Custom}
	}
	if o.download && chosen != nil {
		if err := download(ctx, tc, chosen, o.dataDir, &res); err != nil {
			return err
		}
	}
	return emit(res, func(w io.Writer) {
		if res.Installable == nil {
			fmt.Fprintf(w, "no installable release for %s %s at %s\n", o.product, o.hardware, o.installed)
		} else {
			fmt.Fprintf(w, "installable: %s (version %s, %d bytes, sha256 %s)\n", res.Installable.Target, res.Installable.Release.Version, res.Installable.Length, res.Installable.SHA256)
		}
		for _, r := range res.Refused {
			fmt.Fprintf(w, "refused:     %s (version %s): %s: %s\n", r.Target, r.Version, r.Check, r.Reason)
		}
		if res.Downloaded != "" {
			fmt.Fprintf(w, "downloaded and verified: %s\n", res.Downloaded)
		}
	})
}

// download fetches the chosen release into DATA_DIR/downloads, verified.
func download(ctx context.Context, tc *tufclient.Client, chosen *tufclient.Release, dataDir string, res *CheckResult) error {
	url, err := tc.TargetURL(chosen.Target)
	if err != nil {
		return err
	}
	dest := filepath.Join(dataDir, "downloads", res.Installable.SHA256+"."+filepath.Base(chosen.Path))
	dr, err := tufclient.Download(ctx, tufclient.NewHTTPClient(), url, chosen.Target, dest, tufclient.Limits{})
	if err != nil {
		return err
	}
	res.Downloaded = dest
	res.Download = &DownloadStats{Bytes: dr.Bytes, Resumed: dr.Resumed}
	return nil
}
