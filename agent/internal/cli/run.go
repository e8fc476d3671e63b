package cli

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/agent/internal/daemon"
	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
)

// agentFlags binds the daemon's configuration to flags; set flags override
// the file.
type agentFlags struct {
	config                                                      string
	c                                                           daemon.Config
	health, pollInterval, pollJitter, deferRetry, eventInterval time.Duration
}

func (a *agentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.config, "config", "", "YAML configuration file (agent/packaging/agent.example.yaml)")
	fs.StringVar(&a.c.Server, "server", "", "vigil-server URL")
	fs.StringVar(&a.c.DeviceID, "device-id", "", "this device's id (serial)")
	fs.StringVar(&a.c.DeviceKey, "device-key", "", "this device's private key file")
	fs.StringVar(&a.c.TrustedRoot, "trusted-root", "", "root metadata to trust on first start")
	fs.StringVar(&a.c.DataDir, "data-dir", "", "journal, downloads and TUF metadata (default "+daemon.DefaultDataDir+")")
	fs.StringVar(&a.c.Product, "product", "", "this device's product")
	fs.StringVar(&a.c.Hardware, "hardware", "", "this device's hardware revision")
	fs.StringVar(&a.c.Slots.Backend, "slot-backend", "", "dir or command")
	fs.StringVar(&a.c.Slots.Dir, "slot-dir", "", "with the dir backend: the directory holding a/, b/ and current")
	fs.StringVar(&a.c.HealthCheck.Command, "health-command", "", "health check run after a switch (exit 0: healthy)")
	fs.DurationVar(&a.health, "health-timeout", 0, "health check timeout (default 60s)")
	fs.StringVar(&a.c.Interlock.Command, "interlock-command", "", "clinical-use check: exit 0 free, exit 1 busy")
	fs.StringVar(&a.c.Interlock.File, "interlock-file", "", "clinical-use check: the device is busy while this file exists")
	fs.StringVar(&a.c.RestartCommand, "restart-command", "", "restarts what runs from the slots after a switch")
	fs.DurationVar(&a.pollInterval, "poll-interval", 0, "time between update checks (default 1h)")
	fs.DurationVar(&a.pollJitter, "poll-jitter", 0, "random spread of the poll interval, ± (default 10m)")
	fs.DurationVar(&a.deferRetry, "defer-retry", 0, "time between retries while deferred (default 5m)")
	fs.DurationVar(&a.eventInterval, "event-interval", 0, "time between event deliveries (default 10s)")
	fs.IntVar(&a.c.MaxBootAttempts, "max-boot-attempts", 0, "starts in a switched, unhealthy state before rolling back (default 3)")
	fs.StringVar(&a.c.InstallPolicy, "install-policy", "", "assigned (what the server's rollouts assign; default with --device-key) or newest")
}

// resolve merges file and flags and validates.
func (a *agentFlags) resolve(fs *pflag.FlagSet) (daemon.Config, error) {
	var c daemon.Config
	if a.config != "" {
		var err error
		if c, err = daemon.Load(a.config); err != nil {
			return c, usageError{err}
		}
	}
	set := func(name string, apply func()) {
		if fs.Changed(name) {
			apply()
		}
	}
	f := a.c
	set("server", func() { c.Server = f.Server })
	set("device-id", func() { c.DeviceID = f.DeviceID })
	set("device-key", func() { c.DeviceKey = f.DeviceKey })
	set("trusted-root", func() { c.TrustedRoot = f.TrustedRoot })
	set("data-dir", func() { c.DataDir = f.DataDir })
	set("product", func() { c.Product = f.Product })
	set("hardware", func() { c.Hardware = f.Hardware })
	set("slot-backend", func() { c.Slots.Backend = f.Slots.Backend })
	set("slot-dir", func() { c.Slots.Dir = f.Slots.Dir })
	set("health-command", func() { c.HealthCheck.Command = f.HealthCheck.Command })
	set("health-timeout", func() { c.HealthCheck.Timeout = daemon.Duration(a.health) })
	set("interlock-command", func() { c.Interlock.Command = f.Interlock.Command })
	set("interlock-file", func() { c.Interlock.File = f.Interlock.File })
	set("restart-command", func() { c.RestartCommand = f.RestartCommand })
	set("poll-interval", func() { c.PollInterval = daemon.Duration(a.pollInterval) })
	set("poll-jitter", func() { j := daemon.Duration(a.pollJitter); c.PollJitter = &j })
	set("defer-retry", func() { c.DeferRetry = daemon.Duration(a.deferRetry) })
	set("event-interval", func() { c.EventInterval = daemon.Duration(a.eventInterval) })
	set("max-boot-attempts", func() { c.MaxBootAttempts = f.MaxBootAttempts })
	set("install-policy", func() { c.InstallPolicy = f.InstallPolicy })
	c.Defaults()
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

func newRunCmd() *cobra.Command {
	a := &agentFlags{}
	var once bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: poll, download, install, check health, commit or roll back",
		Long: `Run the device agent. It first finishes or rolls back any install a crash
interrupted (the journal in DATA_DIR says where it stopped), then polls the
repository every --poll-interval (± --poll-jitter) for a newer installable
release, and takes it through: download (streamed, verified) → wait while the
clinical-use interlock says busy → write into the inactive slot → switch →
health check → commit, or roll back to the previous slot.

Settings come from --config and then flags. The installed version is read
from the active slot, never from configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, _ := zap.NewProduction()
			defer log.Sync()
			log = log.With(zap.String("device_id", c.DeviceID))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, c, log, once)
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().BoolVar(&once, "once", false, "run one check and event delivery, then exit (cron, tests)")
	return cmd
}

// Status is what `vigil-agent status` prints.
type Status struct {
	Phase        journal.Phase     `json:"phase"`
	Release      *journal.Release  `json:"release,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	From         string            `json:"from,omitempty"`
	To           string            `json:"to,omitempty"`
	BootAttempts int               `json:"boot_attempts,omitempty"`
	Bad          []string          `json:"bad,omitempty"`
	Active       string            `json:"active_slot"`
	Slots        map[string]string `json:"slots"`
	Installed    string            `json:"installed_version"`
	Pending      int               `json:"events_pending"`
	Events       []api.DeviceEvent `json:"events"`
}

// StatusEvents is how many recent events status shows.
const StatusEvents = 10

func newStatusCmd(emit func(any, func(io.Writer)) error) *cobra.Command {
	a := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the install state, the slots and the last events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			return status(cmd.Context(), c, emit)
		},
	}
	a.register(cmd.Flags())
	return cmd
}

func status(ctx context.Context, c daemon.Config, emit func(any, func(io.Writer)) error) error {
	st, err := journal.Load(c.DataDir)
	if err != nil {
		return err
	}
	b := c.Backend()
	s := Status{Phase: st.Phase, Release: st.Release, Reason: st.Reason, From: st.From, To: st.To, BootAttempts: st.BootAttempts, Bad: st.Bad, Slots: map[string]string{}}
	if s.Active, err = b.Active(ctx); err != nil {
		return err
	}
	for _, sl := range []string{slot.A, slot.B} {
		rel, err := b.Installed(ctx, sl)
		switch {
		case err == nil:
			s.Slots[sl] = rel.Version
		default:
			s.Slots[sl] = "(empty)"
		}
	}
	s.Installed = s.Slots[s.Active]
	if q, err := events.Open(c.DataDir); err == nil {
		if p, _, err := q.Pending(); err == nil {
			s.Pending = len(p)
		}
	}
	s.Events, _ = events.History(c.DataDir, StatusEvents)
	return emit(s, func(w io.Writer) {
		fmt.Fprintf(w, "state:      %s", s.Phase)
		if s.Release != nil {
			fmt.Fprintf(w, " (%s %s)", s.Release.Target, s.Release.Version)
		}
		fmt.Fprintln(w)
		if s.Reason != "" {
			fmt.Fprintf(w, "reason:     %s\n", s.Reason)
		}
		fmt.Fprintf(w, "active:     slot %s, version %s\n", s.Active, s.Installed)
		fmt.Fprintf(w, "slots:      a=%s b=%s\n", s.Slots[slot.A], s.Slots[slot.B])
		fmt.Fprintf(w, "events:     %d waiting for delivery\n", s.Pending)
		for _, e := range s.Events {
			fmt.Fprintf(w, "  %s  %-12s %s %s %s\n", e.Time.Format(time.RFC3339), e.State, e.Version, e.Target, e.Reason)
		}
	})
}

func newProvisionCmd() *cobra.Command {
	a := &agentFlags{}
	var version, target string
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Record the factory release of slot a on a new device",
		Long: `At manufacturing, record which release slot a holds and make it active
(dir backend: creates a/, b/ and the current link). The agent reads the
installed version from the active slot from then on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			if err := release.ValidateVersion(version); err != nil {
				return usageError{fmt.Errorf("--version: %w", err)}
			}
			rel := journal.Release{Target: target, Version: version}
			switch b := c.Backend().(type) {
			case *slot.Dir:
				return b.Provision(rel)
			case *slot.Command:
				return b.Provision(rel)
			}
			return fmt.Errorf("backend %s cannot be provisioned", c.Slots.Backend)
		},
	}
	a.register(cmd.Flags())
	cmd.Flags().StringVar(&version, "version", "", "the factory release version in slot a (required)")
	cmd.Flags().StringVar(&target, "target", "factory", "the factory release's target name")
	return cmd
}
