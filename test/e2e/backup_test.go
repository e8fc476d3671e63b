package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The backup procedure of docs/operations.md for the embedded default:
// stop the server, copy its data directory (database, blobs and online keys
// together), start a server on the copy elsewhere. The restored server has
// the same repository, audit chain and fleet: the CLI verifies it through
// TUF, the chain verifies, a new release publishes, and a device that
// trusted the original installs it from the restored server.
func TestABackupOfTheDataDirectoryRestoresEverything(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.1.0" {
		t.Fatalf("before the backup: %d %s", code, out)
	}
	if err := f.srv.stop(t); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	copyDir(t, f.dataDir, restored)
	ke := keysExample(t)
	f.srv = startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", restored,
		"--snapshot-key", filepath.Join(ke, "snapshot.key"), "--timestamp-key", filepath.Join(ke, "timestamp.key"))
	f.dataDir = restored
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "audit", "verify", "--server", f.srv.URL, "-o", "json")
	var res struct {
		OK bool `json:"ok"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK {
		t.Fatalf("audit chain after the restore: %d %s", code, out)
	}
	if out := f.vigilOK(t, "release", "list"); !strings.Contains(out, "1.1.0") {
		t.Fatalf("releases after the restore: %s", out)
	}
	f.publishImage(t, "1.2.0", appImage(t, f.tmp, "1.2.0", true, 0))
	cfg := mustRead(t, d.config)
	var m map[string]any
	json.Unmarshal(cfg, &m)
	m["server"] = f.srv.URL
	b, _ := json.Marshal(m)
	if err := os.WriteFile(d.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.2.0" {
		t.Fatalf("a device after the restore: %d %s %+v", code, out, d.status(t))
	}
	if m := string(getBytes(t, f.srv.URL+"/metrics")); !strings.Contains(m, `vigil_repo_metadata_expires_timestamp_seconds{role="timestamp"}`) ||
		!strings.Contains(m, `vigil_repo_metadata_expires_timestamp_seconds{role="demo-pump"}`) {
		t.Fatalf("no metadata expiry metrics:\n%.3000s", m)
	}
}
