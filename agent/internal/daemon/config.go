// Package daemon is `vigil-agent run`: it loads the agent's configuration,
// recovers an interrupted install, polls for releases with jitter, drives
// the install engine, and delivers queued events to the server with backoff.
//
// Concurrency: one goroutine drives the engine; another sends events. The
// data directory is locked so a second agent on the same device refuses to
// start.
package daemon

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/interlock"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/settings"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Defaults, with their units.
const (
	DefaultPollInterval  = time.Hour
	DefaultPollJitter    = 10 * time.Minute
	DefaultDeferRetry    = 5 * time.Minute
	DefaultEventInterval = 10 * time.Second
	DefaultDataDir       = "/var/lib/vigil-agent"
	// EnvPrefix starts every environment variable; EnvConfigFile names
	// the YAML file when --config is not given.
	EnvPrefix     = "VIGIL_"
	EnvConfigFile = "VIGIL_AGENT_CONFIG"
)

// Install policies.
const (
	PolicyAssigned = "assigned"
	PolicyNewest   = "newest"
)

// Config is the agent's configuration (agent/packaging/agent.example.yaml):
// each setting is declared once, in declare, and read from the YAML file,
// VIGIL_* variables and flags (internal/settings).
type Config struct {
	Server      string
	DeviceID    string
	DeviceKey   string
	TrustedRoot string
	DataDir     string
	Product     string
	Hardware    string
	Slots       struct {
		Backend     string // dir or command
		Dir         string
		BootedSlot  string
		SetNextBoot string
		MarkGood    string
		WriteImage  string
		// MaxUnpackRatio bounds what an archive without a signed
		// unpacked_length may unpack to, as a multiple of its size.
		MaxUnpackRatio int64
	}
	HealthCheck struct {
		Command string
		Timeout time.Duration
	}
	Interlock struct {
		Command string
		File    string
	}
	RestartCommand string
	// Download bounds each image download (slow retrieval).
	Download struct {
		IdleTimeout time.Duration
		MinRate     int64
	}
	// InstallPolicy is "assigned" (install what the server's rollout
	// assigns; needs device_key) or "newest" (install the newest
	// installable release without rollouts).
	InstallPolicy   string
	PollInterval    time.Duration
	PollJitter      time.Duration
	DeferRetry      time.Duration
	EventInterval   time.Duration
	MaxBootAttempts int64
	// Deltas: rebuild images from signed deltas when one fits (keeps a
	// copy of the installed image in data_dir/base).
	Deltas bool

	set *settings.Set
}

// declare binds every setting to c, with its default (the one table).
func (c *Config) declare() *settings.Set {
	s := settings.New(EnvPrefix)
	s.String(&c.Server, "server", "", "vigil-server (or a mirror of its /repo) URL")
	s.String(&c.DeviceID, "device_id", "", "this device's id (serial number) as registered")
	s.String(&c.DeviceKey, "device_key", "", "this device's ed25519 private key file (vigil keys generate), mode 0600")
	s.String(&c.TrustedRoot, "trusted_root", "", "root metadata to trust on first start (shipped at manufacturing)")
	s.String(&c.DataDir, "data_dir", DefaultDataDir, "journal, downloads, TUF metadata and the event outbox")
	s.String(&c.Product, "product", "", "this device's product")
	s.String(&c.Hardware, "hardware", "", "this device's hardware revision")
	s.String(&c.Slots.Backend, "slots.backend", "dir", "dir (two directories and a `current` link) or command (bootloader hooks)")
	s.String(&c.Slots.Dir, "slots.dir", "", "dir backend: the directory holding a/, b/ and current")
	s.String(&c.Slots.BootedSlot, "slots.booted_slot", "", "command backend: prints the slot the device booted")
	s.String(&c.Slots.SetNextBoot, "slots.set_next_boot", "", "command backend: makes $VIGIL_SLOT boot next")
	s.String(&c.Slots.MarkGood, "slots.mark_good", "", "command backend: marks $VIGIL_SLOT good")
	s.String(&c.Slots.WriteImage, "slots.write_image", "", "command backend: writes $VIGIL_IMAGE into $VIGIL_SLOT")
	s.Int(&c.Slots.MaxUnpackRatio, "slots.max_unpack_ratio", slot.DefaultMaxUnpackRatio, 1, "an archive without a signed unpacked_length unpacks to at most this many times its size")
	s.String(&c.HealthCheck.Command, "health_check.command", "", "health check run after a switch (exit 0: healthy)")
	s.Duration(&c.HealthCheck.Timeout, "health_check.timeout", engine.DefaultHealthTimeout, "how long the health check may run")
	s.String(&c.Interlock.Command, "interlock.command", "", "clinical-use check: exit 0 free, exit 1 busy (stdout: the reason)")
	s.String(&c.Interlock.File, "interlock.file", "", "clinical-use check: the device is busy while this file exists")
	s.String(&c.RestartCommand, "restart_command", "", "restarts what runs from the slots after a switch")
	s.Duration(&c.Download.IdleTimeout, "download.idle_timeout", tufclient.DefaultIdleTimeout, "a download with no byte for this long ends (slow retrieval) and resumes at the next poll")
	s.Int(&c.Download.MinRate, "download.min_rate", tufclient.DefaultMinRate, 1, "slowest accepted download rate, bytes/s averaged over a minute")
	s.String(&c.InstallPolicy, "install_policy", PolicyAssigned, "assigned (what the server's rollouts assign; needs device_key) or newest (no rollouts)")
	s.Duration(&c.PollInterval, "poll_interval", DefaultPollInterval, "time between update checks")
	s.Duration(&c.PollJitter, "poll_jitter", DefaultPollJitter, "random spread of the poll interval, ± (at most a sixth of poll_interval by default)").AllowZero()
	s.Duration(&c.DeferRetry, "defer_retry", DefaultDeferRetry, "time between retries while deferred or waiting to switch")
	s.Duration(&c.EventInterval, "event_interval", DefaultEventInterval, "time between event deliveries")
	s.Int(&c.MaxBootAttempts, "max_boot_attempts", engine.DefaultMaxBootAttempts, 1, "starts in a switched, unhealthy state before rolling back")
	s.Bool(&c.Deltas, "deltas", true, "rebuild releases from signed deltas when one applies to the installed image (keeps a copy of it in data_dir/base; false: full images only)")
	return s
}

// Settings returns the declarations (flags, generated documentation).
func Settings() *settings.Set {
	var c Config
	return c.declare()
}

// RegisterFlags adds --config and one flag per setting to fs.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (agent/packaging/agent.example.yaml; also "+EnvConfigFile+")")
	Settings().RegisterFlags(fs)
}

// LoadConfig builds the configuration from defaults, the YAML file (the
// --config flag, else $VIGIL_AGENT_CONFIG), VIGIL_* variables and the set
// flags of fs (nil: none), then validates it.
func LoadConfig(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	var c Config
	c.set = c.declare()
	path := ""
	if v, ok := lookupEnv(EnvConfigFile); ok {
		path = v
	}
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if err := c.set.Load(fs, path, lookupEnv); err != nil {
		return c, err
	}
	c.derive()
	return c, c.Validate()
}

// Load reads a YAML file with defaults, as LoadConfig does without the
// environment or flags.
func Load(path string) (Config, error) {
	var c Config
	c.set = c.declare()
	if err := c.set.Load(nil, path, func(string) (string, bool) { return "", false }); err != nil {
		return c, err
	}
	c.derive()
	return c, nil
}

// derive fills defaults that depend on other settings.
func (c *Config) derive() {
	if c.set.Source("poll_jitter") == settings.SourceDefault {
		c.PollJitter = min(DefaultPollJitter, c.PollInterval/6)
	}
}

// Errorf makes an error naming a setting.
func (c *Config) Errorf(key, format string, args ...any) error {
	if c.set == nil {
		c.set = Settings()
	}
	return c.set.Errorf(key, format, args...)
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
		return fmt.Errorf("configuration: setting(s) %s missing (in the file, as VIGIL_* variables or as flags)", strings.Join(missing, ", "))
	}
	if !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://") {
		return c.Errorf("server", "%q is not an http(s) URL", c.Server)
	}
	if _, err := os.Stat(c.TrustedRoot); err != nil {
		return c.Errorf("trusted_root", "%v", err)
	}
	if c.DeviceKey != "" {
		if err := keyfile.CheckPrivatePerms(c.DeviceKey); err != nil {
			return c.Errorf("device_key", "%v", err)
		}
		if _, err := keyfile.ReadPrivate(c.DeviceKey); err != nil {
			return c.Errorf("device_key", "%v", err)
		}
	}
	if err := c.validateSlots(); err != nil {
		return err
	}
	switch c.InstallPolicy {
	case PolicyNewest:
	case PolicyAssigned:
		if c.DeviceKey == "" {
			return c.Errorf("device_key", "is required: the device installs only what a rollout assigns it, and the server authenticates its check-ins with this key "+
				"(register it: vigil device register --public-key …). A device outside any rollout must say install_policy: newest explicitly")
		}
	default:
		return c.Errorf("install_policy", "%q is not assigned or newest", c.InstallPolicy)
	}
	if c.PollJitter > c.PollInterval {
		return c.Errorf("poll_jitter", "%s is longer than poll_interval %s", c.PollJitter, c.PollInterval)
	}
	return nil
}

func (c *Config) validateSlots() error {
	switch c.Slots.Backend {
	case "dir":
		if c.Slots.Dir == "" {
			return c.Errorf("slots.dir", "required with slots.backend dir")
		}
	case "command":
		for name, v := range map[string]string{"slots.booted_slot": c.Slots.BootedSlot, "slots.set_next_boot": c.Slots.SetNextBoot, "slots.mark_good": c.Slots.MarkGood, "slots.write_image": c.Slots.WriteImage} {
			if v == "" {
				return c.Errorf(name, "required with slots.backend command")
			}
		}
	default:
		return c.Errorf("slots.backend", "%q is not dir or command", c.Slots.Backend)
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

// Markdown is the agent's settings table of docs/configuration.md,
// generated from the declarations.
func Markdown() string { return (&Config{}).declare().Markdown() }
