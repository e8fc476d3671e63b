package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/daemon"
	"github.com/vigil-ota/vigil/internal/keyfile"
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
		"server: http://s\ndevice_id: d\ntrusted_root: " + root + "\nproduct: p\nhardware: h\nslots: {dir: /x}\npoll_interval: 1m\npoll_jitter: 2m\n": "poll_jitter",
		"health_check: {timeout: soon}\n": "duration",
	} {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		c, err := daemon.Load(p)
		if err == nil {
			c.Defaults()
			err = c.Validate()
		}
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
		c, err := daemon.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		c.Defaults()
		err = c.Validate()
		if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "too open")) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}
