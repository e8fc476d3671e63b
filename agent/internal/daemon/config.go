// Package daemon is `vigil-agent run`: it loads the agent's configuration,
// recovers an interrupted install, polls for releases with jitter, drives
// the install engine, and delivers queued events to the server with backoff.
//
// Concurrency: one goroutine drives the engine; another sends events. The
// data directory is locked so a second agent on the same device refuses to
// start.
package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/interlock"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/internal/keyfile"
)

// Defaults, with their units.
const (
	DefaultPollInterval  = time.Hour
	DefaultPollJitter    = 10 * time.Minute
	DefaultDeferRetry    = 5 * time.Minute
	DefaultEventInterval = 10 * time.Second
	DefaultDataDir       = "/var/lib/vigil-agent"
)

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Config is the agent's configuration file (agent/packaging/agent.example.yaml).
type Config struct {
	Server      string `yaml:"server"`
	DeviceID    string `yaml:"device_id"`
	DeviceKey   string `yaml:"device_key"`
	TrustedRoot string `yaml:"trusted_root"`
	DataDir     string `yaml:"data_dir"`
	Product     string `yaml:"product"`
	Hardware    string `yaml:"hardware"`
	Slots       struct {
		Backend     string `yaml:"backend"` // dir or command
		Dir         string `yaml:"dir"`
		BootedSlot  string `yaml:"booted_slot"`
		SetNextBoot string `yaml:"set_next_boot"`
		MarkGood    string `yaml:"mark_good"`
		WriteImage  string `yaml:"write_image"`
		// MaxUnpackRatio bounds what an archive without a signed
		// unpacked_length may unpack to, as a multiple of its size.
		MaxUnpackRatio int64 `yaml:"max_unpack_ratio"`
	} `yaml:"slots"`
	HealthCheck struct {
		Command string   `yaml:"command"`
		Timeout Duration `yaml:"timeout"`
	} `yaml:"health_check"`
	Interlock struct {
		Command string `yaml:"command"`
		File    string `yaml:"file"`
	} `yaml:"interlock"`
	RestartCommand string `yaml:"restart_command"`
	// Download bounds each image download (slow retrieval): an attempt
	// with no byte for idle_timeout, or averaging less than min_rate
	// bytes/s over a minute, ends and is resumed at the next poll.
	Download struct {
		IdleTimeout Duration `yaml:"idle_timeout"`
		MinRate     int64    `yaml:"min_rate"`
	} `yaml:"download"`
	// InstallPolicy is "assigned" (install what the server's rollout
	// assigns; needs device_key) or "newest" (install the newest
	// installable release without rollouts).
	InstallPolicy   string    `yaml:"install_policy"`
	PollInterval    Duration  `yaml:"poll_interval"`
	PollJitter      *Duration `yaml:"poll_jitter"` // nil: the default; 0 is allowed
	DeferRetry      Duration  `yaml:"defer_retry"`
	EventInterval   Duration  `yaml:"event_interval"`
	MaxBootAttempts int       `yaml:"max_boot_attempts"`
}

// Defaults fills unset values.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Slots.Backend == "" {
		c.Slots.Backend = "dir"
	}
	if c.PollInterval == 0 {
		c.PollInterval = Duration(DefaultPollInterval)
	}
	if c.PollJitter == nil {
		j := Duration(min(DefaultPollJitter, time.Duration(c.PollInterval)/6))
		c.PollJitter = &j
	}
	if c.DeferRetry == 0 {
		c.DeferRetry = Duration(DefaultDeferRetry)
	}
	if c.EventInterval == 0 {
		c.EventInterval = Duration(DefaultEventInterval)
	}
	if c.HealthCheck.Timeout == 0 {
		c.HealthCheck.Timeout = Duration(engine.DefaultHealthTimeout)
	}
	if c.MaxBootAttempts == 0 {
		c.MaxBootAttempts = engine.DefaultMaxBootAttempts
	}
	if c.InstallPolicy == "" {
		c.InstallPolicy = PolicyAssigned
		if c.DeviceKey == "" {
			c.InstallPolicy = PolicyNewest
		}
	}
}

// Install policies.
const (
	PolicyAssigned = "assigned"
	PolicyNewest   = "newest"
)

// Load reads a YAML file; unknown keys are errors.
func Load(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks the configuration; errors name the setting.
func (c *Config) Validate() error {
	var missing []string
	for name, v := range map[string]string{"server": c.Server, "device_id": c.DeviceID, "trusted_root": c.TrustedRoot, "product": c.Product, "hardware": c.Hardware} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("setting(s) %s missing", strings.Join(missing, ", "))
	}
	if !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://") {
		return fmt.Errorf("setting server: %q is not an http(s) URL", c.Server)
	}
	if _, err := os.Stat(c.TrustedRoot); err != nil {
		return fmt.Errorf("setting trusted_root: %w", err)
	}
	if c.DeviceKey != "" {
		if err := keyfile.CheckPrivatePerms(c.DeviceKey); err != nil {
			return fmt.Errorf("setting device_key: %w", err)
		}
		if _, err := keyfile.ReadPrivate(c.DeviceKey); err != nil {
			return fmt.Errorf("setting device_key: %w", err)
		}
	}
	switch c.Slots.Backend {
	case "dir":
		if c.Slots.Dir == "" {
			return errors.New("setting slots.dir: required with slots.backend dir")
		}
	case "command":
		for name, v := range map[string]string{"slots.booted_slot": c.Slots.BootedSlot, "slots.set_next_boot": c.Slots.SetNextBoot, "slots.mark_good": c.Slots.MarkGood, "slots.write_image": c.Slots.WriteImage} {
			if v == "" {
				return fmt.Errorf("setting %s: required with slots.backend command", name)
			}
		}
	default:
		return fmt.Errorf("setting slots.backend: %q is not dir or command", c.Slots.Backend)
	}
	switch c.InstallPolicy {
	case PolicyNewest:
	case PolicyAssigned:
		if c.DeviceKey == "" {
			return errors.New("setting install_policy: assigned needs device_key (the server authenticates check-ins)")
		}
	default:
		return fmt.Errorf("setting install_policy: %q is not assigned or newest", c.InstallPolicy)
	}
	if c.Download.IdleTimeout < 0 || c.Download.MinRate < 0 {
		return errors.New("setting download.idle_timeout / download.min_rate: must not be negative")
	}
	if c.Slots.MaxUnpackRatio < 0 {
		return fmt.Errorf("setting slots.max_unpack_ratio: %d is negative", c.Slots.MaxUnpackRatio)
	}
	if c.MaxBootAttempts < 1 {
		return fmt.Errorf("setting max_boot_attempts: %d is below 1", c.MaxBootAttempts)
	}
	if *c.PollJitter < 0 || *c.PollJitter > c.PollInterval {
		return fmt.Errorf("setting poll_jitter: %s is negative or longer than poll_interval %s", time.Duration(*c.PollJitter), time.Duration(c.PollInterval))
	}
	return nil
}

// Backend builds the configured slot backend.
func (c *Config) Backend() slot.Backend {
	if c.Slots.Backend == "command" {
		return &slot.Command{BootedSlot: c.Slots.BootedSlot, SetNextBoot: c.Slots.SetNextBoot, MarkGoodCmd: c.Slots.MarkGood,
			WriteImage: c.Slots.WriteImage, StateDir: c.DataDir + "/slots"}
	}
	return &slot.Dir{Root: c.Slots.Dir, MaxUnpackRatio: c.Slots.MaxUnpackRatio}
}

// InterlockCheck builds the configured interlock.
func (c *Config) InterlockCheck() interlock.Interlock {
	return interlock.Interlock{Command: c.Interlock.Command, File: c.Interlock.File}
}
