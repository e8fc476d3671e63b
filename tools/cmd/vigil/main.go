// Command vigil is the command line for release engineers and hospital IT.
// See 'vigil --help'.
package main

import (
	"os"

	"github.com/vigil-ota/vigil/tools/internal/cli"
)

func main() { os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr)) }
