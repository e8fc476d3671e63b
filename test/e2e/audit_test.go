package e2e

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

func TestAuditLogRecordsPublishesAndNamesTheFirstTamperedEntry(t *testing.T) {
	f := newRepo(t, nil) // init and add-product are publishes too
	f.publish(t, "1.0.0", "rev-b")
	env := []string{"VIGIL_TOKEN=" + testToken}
	code, out := runBin(t, env, "vigil", "audit", "verify", "--server", f.srv.URL, "-o", "json")
	var res struct {
		OK       bool  `json:"ok"`
		Verified int   `json:"verified"`
		HeadSeq  int64 `json:"head_seq"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || res.Verified != 5 {
		t.Fatalf("verify: %d %s", code, out)
	}
	export := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, out := runBin(t, env, "vigil", "audit", "export", "--server", f.srv.URL, "--since", "2020-01-01", "--out", export); code != 0 {
		t.Fatalf("export: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(mustRead(t, export))), "\n")
	if len(lines) != 5 || !strings.Contains(lines[3], `"action":"repo.publish"`) || !strings.Contains(lines[2], `"action":"repo.upload"`) ||
		!strings.Contains(lines[4], `"action":"release.publish"`) || !strings.Contains(lines[4], `"subject":"demo-pump@1.0.0"`) {
		t.Fatalf("export:\n%s", strings.Join(lines, "\n"))
	}

	db, err := sql.Open("sqlite", filepath.Join(f.dataDir, "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	code, out = runBin(t, env, "vigil", "audit", "verify", "--server", f.srv.URL)
	if code != 1 || !strings.Contains(out, "broken at entry 2") {
		t.Fatalf("tampered chain: exit %d\n%s", code, out)
	}
	if code, _ := runBin(t, env, "vigil", "audit", "export", "--server", f.srv.URL, "--out", export); code != 2 {
		t.Fatal("export overwrote an existing file")
	}
}
