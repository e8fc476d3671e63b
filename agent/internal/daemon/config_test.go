package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-ota/vigil/agent/internal/daemon"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/settings/settingsdoc"
)

func TestExampleConfigParsesAndBadConfigsAreNamed(t *testing.T) {
	c, err := daemon.Load("../../packaging/agent.example.yaml")
	if err != nil {
		t.Fatalf("the shipped example does not parse: %v", err)
	}
	if c.Product != "demo-pump" || c.MaxBootAttempts != 3 {
		t.Fatalf("example: %+v", c)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	os.WriteFile(root, []byte("{}"), 0o644)
	for body, want := range map[string]string{
		"sever: x\n": "sever",
		"server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {backend: floppy}\n": "slots.backend",
		"server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\n":                           "slots.dir",
		"server: ftp://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {dir: /x}\n":          "setting server",
		"server: http://s\n": "device_id",
		"server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {dir: /x}\ninstall_policy: newest\npoll_interval: 1m\npoll_jitter: 2m\n": "poll_jitter",
		"server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {dir: /x}\n":                                                             "setting device_key",
		"health_check: {timeout: soon}\n": "duration",
	} {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		_, err := loadFile(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

// Finding 13: a device key that other local accounts can read is refused.
func TestADeviceKeyReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	os.WriteFile(root, []byte("{}"), 0o644)
	priv, err := keyfile.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	keyPath, _, err := keyfile.Write(dir, "device", priv, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := "server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {dir: /x}\ndevice_key: " + keyPath + "\n"
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(cfg), 0o600)
	for mode, ok := range map[os.FileMode]bool{0o600: true, 0o640: false, 0o644: false} {
		os.Chmod(keyPath, mode)
		_, err := loadFile(p)
		if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "too open")) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

// loadFile loads a configuration file as vigil-agent does, with no
// environment and no flags.
func loadFile(path string) (daemon.Config, error) {
	return daemon.LoadConfig(nil, func(k string) (string, bool) {
		if k == daemon.EnvConfigFile {
			return path, true
		}
		return "", false
	})
}

// One settings mechanism: every setting is read from the file, from its
// VIGIL_* variable and from its flag, later ones winning, and a typo is
// named with its line like the server's.
func TestAgentSettingsComeFromFileThenEnvironmentThenFlags(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	os.WriteFile(root, []byte("{}"), 0o644)
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("server: http://file\ndevice_id: d\ntrusted_root: "+root+"\nproduct: p\nhardware: h\nslots: {dir: /from/file}\ninstall_policy: newest\npoll_interval: 2h\n"), 0o600)
	env := map[string]string{daemon.EnvConfigFile: p, "VIGIL_SLOTS_DIR": "/from/env", "VIGIL_POLL_INTERVAL": "3h"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	daemon.RegisterFlags(fs)
	if err := fs.Parse([]string{"--poll-interval", "4h"}); err != nil {
		t.Fatal(err)
	}
	c, err := daemon.LoadConfig(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "http://file" || c.Slots.Dir != "/from/env" || c.PollInterval != 4*time.Hour || c.PollJitter != 10*time.Minute {
		t.Fatalf("server %s, slots.dir %s, poll %s, jitter %s", c.Server, c.Slots.Dir, c.PollInterval, c.PollJitter)
	}
	os.WriteFile(p, []byte("server: http://s\nhardwre: rev-b\n"), 0o600)
	_, err = loadFile(p)
	if err == nil || !strings.Contains(err.Error(), `line 2: unknown setting "hardwre" (known: `) {
		t.Fatalf("a typo: %v", err)
	}
}

func TestConfigurationDocListsEveryAgentSetting(t *testing.T) {
	settingsdoc.CheckDocSection(t, "agent-settings", daemon.Markdown())
}
