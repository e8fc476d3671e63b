// Command vigil-agent is the device daemon: it verifies patches through TUF,
// stages them into an A/B slot, checks health, and commits or rolls back by
// itself. This build carries only the version command; the update client
// arrives with the signed-publishing and agent work (docs/architecture.md).
//
// Exit codes: 0 success, 1 failure, 2 bad usage.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/buildinfo"
)

func main() {
	root := &cobra.Command{
		Use:           "vigil-agent",
		Short:         "Vigil's device agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Println(buildinfo.Version) },
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "vigil-agent:", err)
		os.Exit(2)
	}
}
