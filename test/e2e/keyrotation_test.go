package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
)

// After a suspected online-key compromise: new snapshot and timestamp keys
// are configured as the server's next keys, `vigil repo rotate online`
// publishes a root naming them (through an incident), and from that
// publish on the server signs with them; a device that trusted the old
// root walks to the new one and keeps installing; a server holding only
// the old keys can no longer publish; the rotation is on the incident's
// timeline.
func TestOnlineKeysAreRotatedAfterACompromise(t *testing.T) {
	next := filepath.Join(t.TempDir(), "next")
	if code, out := runBin(t, nil, "vigil", "keys", "generate", "snapshot-2", "timestamp-2", "--dir", next); code != 0 {
		t.Fatal(out)
	}
	nextEnv := []string{"VIGIL_SNAPSHOT_KEY_NEXT=" + filepath.Join(next, "snapshot-2.key"), "VIGIL_TIMESTAMP_KEY_NEXT=" + filepath.Join(next, "timestamp-2.key")}
	f := newRepo(t, nextEnv)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.1.0" {
		t.Fatalf("before the rotation: %d %s", code, out)
	}
	var keys api.OnlineKeys
	json.Unmarshal([]byte(f.manage(t, "GET", api.RouteOnlineKeys, nil)), &keys)
	if keys.NextTimestampID == "" || keys.NextTimestampID == keys.TimestampID {
		t.Fatalf("online keys: %+v", keys)
	}
	var inc api.Incident
	f.apiJSON(t, &inc, "incident", "open", "--title", "backup of the server's key directory lost", "--severity", "high")

	f.vigilOK(t, "repo", "rotate", "online", "--reason", "backup tape with the online keys lost", "--incident", inc.ID, "--yes")
	ts := getBytes(t, f.srv.URL+"/repo/metadata/timestamp.json")
	md, err := metadata.Timestamp().FromBytes(ts)
	if err != nil || len(md.Signatures) != 1 || md.Signatures[0].KeyID != keys.NextTimestampID {
		t.Fatalf("timestamp after the rotation is signed by %+v (%v), want %s", md.Signatures, err, keys.NextTimestampID)
	}
	f.publishImage(t, "1.2.0", appImage(t, f.tmp, "1.2.0", true, 0))
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.2.0" {
		t.Fatalf("a device after the rotation: %d %s %+v", code, out, d.status(t))
	}

	// A server left with only the old keys cannot sign for the new root.
	f.srv.stop(t)
	ke := keysExample(t)
	f.srv = startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", f.dataDir,
		"--snapshot-key", filepath.Join(ke, "snapshot.key"), "--timestamp-key", filepath.Join(ke, "timestamp.key"))
	code, out := f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.3.0", "--file", appImage(t, f.tmp, "1.3.0", true, 0), "--hardware", "rev-b")
	if code == 0 || !strings.Contains(out, "online keys") {
		t.Fatalf("publishing with the retired keys: exit %d %s", code, out)
	}
	// With the new keys as its current keys, it publishes again.
	f.srv.stop(t)
	f.srv = startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", f.dataDir,
		"--snapshot-key", filepath.Join(next, "snapshot-2.key"), "--timestamp-key", filepath.Join(next, "timestamp-2.key"))
	f.publishImage(t, "1.3.0", appImage(t, f.tmp, "1.3.0", true, 0))
	if out := f.vigilOK(t, "release", "list"); !strings.Contains(out, "1.3.0") {
		t.Fatalf("release list: %s", out)
	}
	var tl api.Timeline
	f.apiJSON(t, &tl, "incident", "timeline", inc.ID)
	found := false
	for _, e := range tl.Entries {
		if e.Action == "repo.rotate" && e.Phase == "containment" && strings.Contains(string(e.Details), keys.NextTimestampID) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the rotation is not on the incident's timeline: %+v", tl.Entries)
	}
	if _, err := os.Stat(filepath.Join(f.keys, "trusted-root.json")); err != nil {
		t.Fatal(err)
	}
}
