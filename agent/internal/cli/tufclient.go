package cli

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/tufclient"
)

// conformanceOptions are the flags of the tuf-conformance client CLI
// (CLIENT-CLI.md of the public tuf-conformance suite).
type conformanceOptions struct {
	metadataDir, metadataURL, targetBaseURL, targetDir string
	targetNames                                        []string
}

func newTUFClientCmd() *cobra.Command {
	o := &conformanceOptions{}
	cmd := &cobra.Command{
		Use:   "tuf-client COMMAND",
		Short: "The tuf-conformance client interface (init, refresh, download)",
		Long: `Implements the command line the public tuf-conformance suite drives, with
the same TUF client and streaming download the agent uses:

  vigil-agent tuf-client --metadata-dir DIR init TRUSTED_ROOT
  vigil-agent tuf-client --metadata-dir DIR --metadata-url URL refresh
  vigil-agent tuf-client --metadata-dir DIR --metadata-url URL --target-name NAME \
      --target-base-url URL --target-dir DIR download

Expiry is checked against the time 'date +%s' prints, so the suite's faketime
(which Go's clock ignores) still applies. Exit code 0 on success, 1 on failure.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "init" {
				if len(args) != 2 {
					return usagef("init takes the trusted root file: tuf-client --metadata-dir DIR init FILE")
				}
				return conformanceInit(o.metadataDir, args[1])
			}
			if len(args) != 1 {
				return usagef("%s takes no arguments", args[0])
			}
			return runConformance(cmd.Context(), o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.metadataDir, "metadata-dir", "", "trusted metadata directory (required)")
	f.StringVar(&o.metadataURL, "metadata-url", "", "repository metadata URL")
	f.StringVar(&o.targetBaseURL, "target-base-url", "", "repository targets URL")
	f.StringVar(&o.targetDir, "target-dir", "", "where downloaded targets are kept")
	f.StringArrayVar(&o.targetNames, "target-name", nil, "target path to download (repeat)")
	return cmd
}

// conformanceInit installs the trusted root into the metadata directory.
func conformanceInit(dir, rootFile string) error {
	if dir == "" {
		return usagef("--metadata-dir is required")
	}
	data, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "root.json"), data, 0o600)
}

// referenceTime asks `date +%s` for the time, so faketime reaches us.
func referenceTime() time.Time {
	out, err := exec.Command("date", "+%s").Output()
	if err != nil {
		return time.Now()
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.Unix(sec, 0).UTC()
}

func runConformance(ctx context.Context, o *conformanceOptions, command string) error {
	if o.metadataDir == "" {
		return usagef("--metadata-dir is required")
	}
	switch command {
	case "refresh", "download":
	default:
		return usagef("unknown command %q (init, refresh, download)", command)
	}
	if o.metadataURL == "" {
		return usagef("--metadata-url is required")
	}
	cfg := tufclient.Config{MetadataURL: o.metadataURL, TargetsURL: o.targetBaseURL, Dir: o.metadataDir, RefTime: referenceTime()}
	tc, err := tufclient.Refresh(cfg)
	if err != nil {
		return err
	}
	if command == "refresh" {
		return nil
	}
	if o.targetDir == "" || o.targetBaseURL == "" || len(o.targetNames) == 0 {
		return usagef("download needs --target-name, --target-base-url and --target-dir")
	}
	for _, name := range o.targetNames {
		tf, err := tc.TargetInfo(name)
		if err != nil {
			return err
		}
		tf.Path = name
		dest := filepath.Join(o.targetDir, url.PathEscape(name))
		if data, err := os.ReadFile(dest); err == nil && tf.VerifyLengthHashes(data) == nil {
			continue // cached and still valid
		}
		u, err := tc.TargetURL(tf)
		if err != nil {
			return err
		}
		if _, err := tufclient.Download(ctx, tufclient.NewHTTPClient(), u, tf, dest, tufclient.Limits{}); err != nil {
			return err
		}
	}
	return nil
}
