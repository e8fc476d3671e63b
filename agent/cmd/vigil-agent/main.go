// Command vigil-agent is the device daemon: it verifies patches through TUF,
// stages them into an A/B slot, checks health, and commits or rolls back by
// itself. See 'vigil-agent --help' and agent/internal/cli.
package main

import (
	"os"

	"github.com/vigil-ota/vigil/agent/internal/cli"
)

func main() { os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr)) }
