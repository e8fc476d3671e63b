// Package cli is the vigil command line: cobra commands (what the user
// types), their options (validated flags), and calls into the packages that
// do the work. Commands print human text by default and JSON with
// --output json, for scripts.
//
// Exit codes: 0 success; 1 the operation failed; 2 bad usage or bad input
// (nothing was changed).
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/buildinfo"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// UsageError marks errors caused by what the user typed.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// globals are the flags every command shares.
type globals struct {
	output string
	stdout io.Writer
}

func (g *globals) validate() error {
	switch g.output {
	case "text", "json":
		return nil
	}
	return usagef("--output %q is not text or json", g.output)
}

// emit writes v as JSON with --output json, or text otherwise.
func (g *globals) emit(v any, text func(w io.Writer)) error {
	if g.output == "json" || text == nil {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(g.stdout)
	return nil
}

// Run executes the command line and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout}
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Release engineering and hospital IT for Vigil",
		Long: `vigil is the command line for Vigil's people:

  release engineers   make and guard signing keys, publish patches, plan rollouts
  hospital IT         approve rollout waves for their sites, set windows, read reports

Start with keys: 'vigil keys generate --help' explains the key layout.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input
(nothing was changed).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return g.validate()
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(newKeysCmd(g), newRepoCmd(g), newReleaseCmd(g), newAuditCmd(g), newSiteCmd(g), newDeviceCmd(g),
		newRolloutCmd(g), newApproveCmd(g), newDeferCmd(g), newTokenCmd(g), &cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.Version) },
		})
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "vigil:", err)
	var ue UsageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitFail
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand"} {
		if len(msg) >= len(p) && (msg[:len(p)] == p) {
			return true
		}
	}
	return false
}
