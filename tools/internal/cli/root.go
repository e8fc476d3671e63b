// Package cli is the vigil command line, in three layers as cosign's is:
// cobra commands (what the user types and the --help that teaches it),
// options (flags, validated into typed values), and the work itself, done
// by api/client (the server's typed API) and tools/internal/repotool
// (offline signing). Commands print human text by default and JSON with
// --output json, for scripts.
//
// Exit codes: 0 success; 1 the operation failed; 2 bad usage or bad input
// (nothing was changed); 3 refused for security (a signature, hash or TUF
// check failed: never retry blindly).
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/internal/buildinfo"
	"github.com/vigil-ota/vigil/internal/settings"
	"github.com/vigil-ota/vigil/internal/tufclient"
	"github.com/vigil-ota/vigil/tools/internal/repotool"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFail    = 1
	ExitUsage   = 2
	ExitRefused = 3
)

// Environment variables of the persistent settings (settings.Set keys
// "server" and "token").
const (
	EnvServer = "VIGIL_SERVER"
	EnvToken  = "VIGIL_TOKEN"
)

// UsageError marks errors caused by what the user typed.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// VerificationError marks a check that failed for security (exit 3): a
// tampered evidence bundle.
type VerificationError struct{ Err error }

func (e VerificationError) Error() string { return e.Err.Error() }
func (e VerificationError) Unwrap() error { return e.Err }

// globals are the settings every command shares: --output, and --server
// and --token with their variables (internal/settings, as the server and
// the agent read theirs).
type globals struct {
	output string
	stdout io.Writer
	server string
	token  string
	set    *settings.Set
}

func (g *globals) validate() error {
	switch g.output {
	case "text", "json":
		return nil
	}
	return usagef("--output %q is not text or json", g.output)
}

// client returns the API client for --server with --token.
func (g *globals) client() (*client.Client, error) {
	if g.server == "" {
		return nil, usagef("--server (or $%s) is required: the vigil-server URL, e.g. http://127.0.0.1:8080", EnvServer)
	}
	return client.New(g.server, g.token), nil
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

// declare binds the settings every command shares.
func (g *globals) declare() {
	g.set.String(&g.server, "server", "", "vigil-server URL, e.g. http://127.0.0.1:8080")
	g.set.String(&g.token, "token", "", "operator bearer token (vigil token create)").Secret()
}

// Markdown is the CLI's settings table of docs/configuration.md.
func Markdown() string {
	g := &globals{set: settings.New("VIGIL_")}
	g.declare()
	return g.set.Markdown()
}

// Run executes the command line and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, set: settings.New("VIGIL_")}
	root := newRoot(g, stdout)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "vigil:", err)
	return exitCode(err)
}

// Commands is the command tree (tests walk it: every command teaches).
func Commands() *cobra.Command {
	return newRoot(&globals{stdout: io.Discard, set: settings.New("VIGIL_")}, io.Discard)
}

func newRoot(g *globals, stdout io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Release engineering and hospital IT for Vigil",
		Long: `vigil is the command line for Vigil's people:

  release engineers   make and guard signing keys, publish patches with SBOMs, plan rollouts
  security officers   import vulnerability feeds, triage findings, watch exposure and clocks
  hospital IT         approve rollout waves for their sites, set windows, read reports

Start with keys: 'vigil keys generate --help' explains the key layout, then
'vigil repo --help' the procedure for a new repository.

Every command that talks to a server takes --server (or $VIGIL_SERVER) and
sends the token in --token (or $VIGIL_TOKEN).

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input
(nothing was changed), 3 refused for security (a signature, hash or TUF
check failed; or a release still carries a known exploited vulnerability).`,
		Example:       "  export VIGIL_SERVER=https://updates.example.com VIGIL_TOKEN=vgl_…\n  vigil release list",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.set.Load(cmd.Flags(), "", os.LookupEnv); err != nil {
				return UsageError{err}
			}
			return g.validate()
		},
	}
	g.declare()
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	g.set.RegisterFlags(root.PersistentFlags())
	root.AddCommand(newKeysCmd(g), newRepoCmd(g), newReleaseCmd(g), newAuditCmd(g), newSiteCmd(g), newDeviceCmd(g),
		newRolloutCmd(g), newApproveCmd(g), newDeferCmd(g), newTokenCmd(g), newSBOMCmd(g), newFeedCmd(g), newFindingsCmd(g),
		newExposureCmd(g), newVEXCmd(g), newCVDCmd(g), newIncidentCmd(g), newNoticeCmd(g), newReportCmd(g), newEvidenceCmd(g), &cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.Version) },
		})
	return root
}

// exitCode sorts an error by what the user should do about it.
func exitCode(err error) int {
	var ue UsageError
	var ae *api.Error
	var ke *repotool.KeyError
	var ve VerificationError
	var rve *repotool.VerificationError
	var rue *repotool.UsageError
	switch {
	case errors.As(err, &ve) || errors.As(err, &rve):
		return ExitRefused
	case errors.As(err, &rue):
		return ExitUsage
	case errors.As(err, &ue) || errors.As(err, &ke) || isCobraUsage(err):
		return ExitUsage
	case tufclient.IsVerification(err):
		return ExitRefused
	case errors.As(err, &ae):
		switch ae.Code {
		case api.CodeVerificationFailed, api.CodeHashMismatch, api.CodeKnownExploited:
			return ExitRefused
		}
		if ae.Status == 400 || ae.Status == 413 {
			return ExitUsage
		}
	}
	return ExitFail
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand", "invalid argument"} {
		if len(msg) >= len(p) && (msg[:len(p)] == p) {
			return true
		}
	}
	return false
}
