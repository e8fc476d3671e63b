package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/agent/internal/daemon"
	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
)

// loadConfig reads the agent's configuration for a command: defaults, the
// --config file, VIGIL_* variables and the command's set flags (every
// setting has a flag; daemon.RegisterFlags). A bad setting is a usage error
// that names it.
func loadConfig(fs *pflag.FlagSet) (daemon.Config, error) {
	c, err := daemon.LoadConfig(fs, os.LookupEnv)
	if err != nil {
		return c, usageError{err}
	}
	return c, nil
}

func newRunCmd() *cobra.Command {
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

Settings come from the --config file, then VIGIL_* variables, then flags
(each setting has all three: slots.dir is VIGIL_SLOTS_DIR and --slots-dir;
docs/configuration.md lists them). The installed version is read from the
active slot, never from configuration.

Example:
  vigil-agent run --config /etc/vigil/agent.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd.Flags())
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
	daemon.RegisterFlags(cmd.Flags())
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
	// Refused is the server's standing refusal of the events (nil: none).
	Refused *events.Refusal   `json:"events_refused,omitempty"`
	Events  []api.DeviceEvent `json:"events"`
}

// StatusEvents is how many recent events status shows.
const StatusEvents = 10

func newStatusCmd(emit func(any, func(io.Writer)) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the install state, the slots and the last events",
		Long: `Show what the agent is doing: the journaled install state and why, the
slots and their versions, the events waiting for delivery, and the last
events.

Example:
  vigil-agent status --config /etc/vigil/agent.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			return status(cmd.Context(), c, emit)
		},
	}
	daemon.RegisterFlags(cmd.Flags())
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
			s.Refused, _ = events.LastRefusal(c.DataDir)
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
		if r := s.Refused; r != nil {
			fmt.Fprintf(w, "            the server refuses them (HTTP %d %s, since %s): %s\n", r.Status, r.Code, r.Time.Format(time.RFC3339), r.Message)
			if r.Code == api.CodeDeviceUnauthenticated {
				fmt.Fprintln(w, "            is this device registered with this key? (vigil device register --public-key …)")
			}
		}
		for _, e := range s.Events {
			fmt.Fprintf(w, "  %s  %-12s %s %s %s\n", e.Time.Format(time.RFC3339), e.State, e.Version, e.Target, e.Reason)
		}
	})
}

func newProvisionCmd() *cobra.Command {
	var version, target, image string
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Record the factory release of slot a on a new device",
		Long: `At manufacturing, record which release slot a holds and make it active
(dir backend: creates a/, b/ and the current link). The agent reads the
installed version from the active slot from then on.

With --image, the factory image file slot a was written from is kept as the
base of the first delta (DATA_DIR/base/SHA256) and its SHA-256 recorded, so
the first patch can be a delta too (docs/delta.md).

Example:
  vigil-agent provision --config /etc/vigil/agent.yaml --version 1.0.0 --image pump-1.0.0.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if err := release.ValidateVersion(version); err != nil {
				return usageError{fmt.Errorf("--version: %w", err)}
			}
			rel := journal.Release{Target: target, Version: version}
			if image != "" {
				if !c.Deltas {
					return usageError{fmt.Errorf("--image keeps a base for deltas, but deltas is false in the configuration")}
				}
				sum, n, err := keepFactoryImage(image, filepath.Join(c.DataDir, engine.BaseDir))
				if err != nil {
					return fmt.Errorf("--image: %w", err)
				}
				rel.SHA256, rel.Length = sum, n
			}
			switch b := c.Backend().(type) {
			case *slot.Dir:
				return b.Provision(rel)
			case *slot.Command:
				return b.Provision(rel)
			}
			return fmt.Errorf("backend %s cannot be provisioned", c.Slots.Backend)
		},
	}
	daemon.RegisterFlags(cmd.Flags())
	cmd.Flags().StringVar(&version, "version", "", "the factory release version in slot a (required)")
	cmd.Flags().StringVar(&target, "target", "factory", "the factory release's target name")
	cmd.Flags().StringVar(&image, "image", "", "the factory image slot a was written from: kept as the base of the first delta")
	return cmd
}

// keepFactoryImage copies the factory image into dir as SHA256 (hashed
// while copying, renamed only when complete) and returns its hash and size.
func keepFactoryImage(path, dir string) (string, int64, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, err
	}
	tmp, err := os.CreateTemp(dir, ".factory-*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(dir, sum)); err != nil {
		return "", 0, err
	}
	return sum, n, journal.SyncDir(dir)
}
