package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/daemon"
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
