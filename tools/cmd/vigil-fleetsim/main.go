// Command vigil-fleetsim simulates a fleet of devices against vigil-server
// replicas on this machine, for load and fault tests. See
// 'vigil-fleetsim --help' and tools/internal/fleetsim.
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
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/tools/internal/fleetsim"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // registration failed, or events were left unacknowledged
	exitUsage = 2
)

type usageError struct{ error }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "vigil-fleetsim:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// newCommand is the command with its flags, writing to stdout and stderr.
func newCommand(stdout, stderr io.Writer) *cobra.Command {
	var opt fleetsim.Options
	var summaryPath, beliefsPath string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "vigil-fleetsim --server URL [--server URL…] --token TOKEN --devices N --sites A,B",
		Short: "Simulate a fleet of devices against vigil-server replicas (loopback only)",
		Long: `vigil-fleetsim generates N devices, each with its own ed25519 key (derived
from --seed and the device id), registers them through the CSV import API
(unless --register=false: a second run with the same --seed is the same
fleet), then runs them against the servers at --rate check-ins per second
with the agent's signed protocol. A device that is assigned a release
reports downloading, staged and its outcome after --event-latency, without
installing anything. Shares of the fleet defer once (in clinical use),
fail the health check (rolled back) or stay offline (--defer-share,
--fail-share, --offline-share; which device does what is a hash of the seed
and its id).

Device i prefers server i mod n and fails over to the next server when its
server cannot be reached or answers 5xx. The run stops after --duration,
after --max-checkins, or on SIGINT/SIGTERM; then every event not yet
acknowledged is delivered (within 60 s) and each device checks in once
more. Progress goes to stderr once a second; the JSON summary (rate, p50,
p99, errors, states, a per-second timeline) to --summary; what each device
believes the server recorded to --beliefs.

Only loopback servers are accepted: never point a load generator at a
real fleet.

Exit codes: 0 done; 1 registration failed or events were left
unacknowledged; 2 bad usage.`,
		Example: `  vigil-fleetsim --server http://127.0.0.1:8080 --token "$VIGIL_TOKEN" \
      --devices 20000 --sites st-mary,north --create-sites --site-cap 50 \
      --rate 2000 --duration 2m --fail-share 0.01 --defer-share 0.05 --summary run.json`,
		SilenceUsage: true, SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := fleetsim.New(opt)
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var regSecs float64
			if opt.Register {
				t0 := time.Now()
				if err := s.Register(ctx); err != nil {
					return err
				}
				regSecs = time.Since(t0).Seconds()
				fmt.Fprintf(stderr, "registered %d devices in %.1f s\n", opt.Devices, regSecs)
			}
			sum, err := s.Run(ctx)
			if err != nil {
				return err
			}
			sum.RegisterSecs = regSecs
			if err := writeJSON(summaryPath, stdout, sum); err != nil {
				return err
			}
			if beliefsPath != "" {
				if err := writeJSON(beliefsPath, stdout, sum.Beliefs); err != nil {
					return err
				}
			}
			fmt.Fprintf(stderr, "%d check-ins in %.1f s (%.0f/s), p50 %.1f ms, p99 %.1f ms, %d failovers, errors %v\n",
				sum.CheckIns, sum.Seconds, sum.Rate, sum.P50Ms, sum.P99Ms, sum.Failovers, sum.Errors)
			if sum.EventsPending > 0 {
				return fmt.Errorf("%d events were never acknowledged", sum.EventsPending)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opt.Servers, "server", nil, "base URL of a vigil-server replica (repeat or comma-separate; loopback only)")
	f.StringVar(&opt.Token, "token", os.Getenv("VIGIL_TOKEN"), "operator token for --create-sites and registration ($VIGIL_TOKEN)")
	f.IntVar(&opt.Devices, "devices", 1000, fmt.Sprintf("devices in the fleet (at most %d)", fleetsim.MaxDevices))
	f.StringVar(&opt.Prefix, "prefix", "SIM", "device id prefix (PREFIX-000000…)")
	f.StringVar(&opt.Product, "product", "demo-pump", "product of every device")
	f.StringVar(&opt.Hardware, "hardware", "rev-b", "hardware revision of every device")
	f.StringVar(&opt.Installed, "installed", "1.0.0", "version every device starts on")
	f.StringSliceVar(&opt.Sites, "sites", nil, "sites the devices are spread over, round-robin")
	f.IntVar(&opt.CareAreas, "care-areas", 0, "care areas per site (ward-0…)")
	f.BoolVar(&opt.CreateSites, "create-sites", false, "create (or replace) the sites: UTC, no maintenance windows, --site-cap")
	f.IntVar(&opt.SiteCap, "site-cap", 0, "concurrent-install cap of created sites (0: none)")
	f.BoolVar(&opt.Register, "register", true, "import the devices before running")
	f.StringVar(&opt.Seed, "seed", "vigil-fleetsim", "seed of the device keys and behaviours")
	f.Float64Var(&opt.Rate, "rate", fleetsim.DefaultRate, "check-ins per second, whole fleet")
	f.IntVar(&opt.Workers, "workers", fleetsim.DefaultWorkers, "requests in flight")
	f.BoolVar(&opt.SignEveryRequest, "sign-every-request", false, "sign each request with the device key instead of opening a session (an agent's behaviour towards an older server)")
	f.DurationVar(&opt.Duration, "duration", time.Minute, "stop after this long (0: until SIGINT/SIGTERM)")
	f.Int64Var(&opt.MaxCheckIns, "max-checkins", 0, "stop after this many check-ins (0: no bound)")
	f.Float64Var(&opt.Behaviour.DeferShare, "defer-share", 0, "share of devices that defer their first assignment once")
	f.Float64Var(&opt.Behaviour.FailShare, "fail-share", 0, "share of devices that fail the health check (rolled back)")
	f.Float64Var(&opt.Behaviour.OfflineShare, "offline-share", 0, "share of devices that never check in")
	f.DurationVar(&opt.Behaviour.EventLatency, "event-latency", fleetsim.DefaultEventLatency, "time from an assignment to its outcome")
	f.StringVar(&summaryPath, "summary", "-", "where the JSON summary goes (- for stdout)")
	f.StringVar(&beliefsPath, "beliefs", "", "write what each device believes the server recorded (JSON by device id)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	cmd.PreRun = func(*cobra.Command, []string) {
		if !quiet {
			opt.Progress = stderr
		}
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected argument %q: everything is a flag", args[0])}
		}
		return nil
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd
}

func writeJSON(path string, stdout io.Writer, v any) error {
	w := stdout
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
