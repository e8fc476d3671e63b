// Command vigil-server serves Vigil's API, TUF repository and probes.
//
// Exit codes: 0 clean shutdown; 1 a runtime failure; 2 a bad configuration
// or bad usage (the message names the setting).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/vigil-ota/vigil/internal/buildinfo"
	"github.com/vigil-ota/vigil/server/internal/app"
	"github.com/vigil-ota/vigil/server/internal/config"
	"github.com/vigil-ota/vigil/server/internal/logging"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "vigil-server:", err)
	var ce *config.Error
	var ue usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return exitConfig
	}
	return exitFail
}

func newRoot(stdout io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil-server",
		Short: "Serve Vigil's API, TUF repository and probes",
		Long: `vigil-server runs the Vigil server: the signed-patch repository, the fleet
API and the probes, on one machine or as many replicas.

With no settings it runs the embedded default: a SQLite file and a blob
directory inside --data-dir (./var), listening on 127.0.0.1:8080.
Scale out with --database-url postgres://… and --blob-url s3://….

Settings come from defaults, then the YAML file (--config or VIGIL_CONFIG),
then VIGIL_* environment variables, then flags; each flag below names its
variable. Check the result with 'vigil-server config print'.

Probes: GET /healthz (process up), /readyz (database and blob store
reachable), /metrics (Prometheus).

Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	config.RegisterFlags(root.PersistentFlags())
	root.AddCommand(newConfigCmd(stdout), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.Version) },
	})
	return root
}

func serve(ctx context.Context, cfg config.Config) error {
	log, err := logging.New(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return cfg.Errorf("log_format", "%v", err)
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := app.Open(ctx, cfg, log)
	if err != nil {
		log.Error("start-up failed", zap.Error(err))
		return err
	}
	return srv.Run(ctx)
}

func newConfigCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	var output string
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration, secrets redacted",
		Long: `Print the configuration vigil-server would run with, after defaults, the
file, the environment and flags, with passwords and secret keys redacted.
Each value's source (default, file, env, flag) is shown as a comment in YAML
output and in a "sources" object in JSON output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			values := cfg.Printable()
			switch output {
			case "json":
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"settings": values, "sources": cfg.Sources})
			case "yaml":
				doc := &yaml.Node{Kind: yaml.MappingNode}
				for _, k := range config.Keys() {
					kn := &yaml.Node{Kind: yaml.ScalarNode, Value: k}
					vn := &yaml.Node{Kind: yaml.ScalarNode, Value: values[k], LineComment: cfg.Sources[k]}
					doc.Content = append(doc.Content, kn, vn)
				}
				enc := yaml.NewEncoder(stdout)
				defer enc.Close()
				return enc.Encode(doc)
			default:
				return usageError{fmt.Errorf("--output %q is not yaml or json", output)}
			}
		},
	}
	print.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	cmd.AddCommand(print)
	return cmd
}
