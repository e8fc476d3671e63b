// Package cli is vigil-agent's command line: `run` (the daemon; package
// daemon), `status`, `provision` (the factory release of a new device),
// `check` (find, verify and optionally download the newest installable
// release, without installing), `tuf-client` (the public tuf-conformance
// client interface), and `version`. Settings come from the shared settings
// mechanism (daemon.LoadConfig): the --config file, VIGIL_* variables, flags.
//
// Exit codes: 0 success; 1 failure (network, disk); 2 bad usage; 3 a
// security check refused the repository or the release (the message names
// the check).
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/buildinfo"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFail    = 1
	ExitUsage   = 2
	ExitRefused = 3
)

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// refusedError is a release refused for this device.
type refusedError struct{ error }

// Run executes the command line and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	var output string
	root := &cobra.Command{
		Use:   "vigil-agent",
		Short: "Vigil's device agent",
		Long: `vigil-agent runs on each device: it verifies patches through TUF before
anything touches the device.

Exit codes: 0 success, 1 failure, 2 bad usage, 3 a security check refused
the repository or the release (the message names the check).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if output != "text" && output != "json" {
				return usagef("--output %q is not text or json", output)
			}
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	emit := func(v any, text func(io.Writer)) error {
		if output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		text(stdout)
		return nil
	}
	root.AddCommand(newCheckCmd(emit), newTUFClientCmd(), newRunCmd(), newStatusCmd(emit), newProvisionCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.Version) },
	})
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "vigil-agent:", err)
	if len(args) > 0 && args[0] == "tuf-client" {
		return ExitFail // the conformance interface knows only 0 and 1
	}
	var ue usageError
	var re refusedError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &re), tufclient.IsVerification(err):
		return ExitRefused
	}
	return ExitFail
}
