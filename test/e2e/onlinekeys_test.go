package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The embedded default is zero set-up and safe: with no online keys
// configured, the server generates its own (0600, in its data directory,
// logged with their key ids) and keeps them across restarts; `vigil repo
// init` takes them from the server only when told which key ids to expect.
func TestEmbeddedDefaultGeneratesItsOnlineKeysAndInitChecksThem(t *testing.T) {
	data := filepath.Join(t.TempDir(), "var")
	srv := startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", data)
	m := regexp.MustCompile(`"msg":"online keys","snapshot_keyid":"([0-9a-f]{64})","timestamp_keyid":"([0-9a-f]{64})"`).FindStringSubmatch(srv.logs.String())
	if m == nil {
		t.Fatalf("no online keys line:\n%s", srv.logs)
	}
	snap, ts := m[1], m[2]
	for _, k := range []string{"snapshot.key", "timestamp.key"} {
		st, err := os.Stat(filepath.Join(data, "keys", k))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", k, st, err)
		}
	}
	keys := filepath.Join(t.TempDir(), "keys")
	copyDir(t, keysExample(t), keys)
	os.Remove(filepath.Join(keys, "snapshot.pub"))
	os.Remove(filepath.Join(keys, "timestamp.pub"))
	env := []string{"VIGIL_TOKEN=" + testToken}
	init := []string{"repo", "init", "--server", srv.URL, "--keys-dir", keys, "--tuf-dir", t.TempDir()}
	if code, out := runBin(t, env, "vigil", init...); code != 2 || !strings.Contains(out, "--expect-online-keyid "+snap+" --expect-online-keyid "+ts) {
		t.Fatalf("init without expectations: exit %d %s", code, out)
	}
	if code, out := runBin(t, env, "vigil", append(init, "--expect-online-keyid", strings.Repeat("0", 64), "--expect-online-keyid", ts)...); code != 3 || !strings.Contains(out, "is not one you expect") {
		t.Fatalf("init with a wrong expectation: exit %d %s", code, out)
	}
	if code, out := runBin(t, env, "vigil", append(init, "--expect-online-keyid", snap, "--expect-online-keyid", ts)...); code != 0 {
		t.Fatalf("init: exit %d %s", code, out)
	}
	if code, out := runBin(t, env, "vigil", "repo", "add-product", "demo-pump", "--server", srv.URL, "--keys-dir", keys, "--tuf-dir", t.TempDir()); code != 0 {
		t.Fatalf("a publish signed with the generated keys: exit %d %s", code, out)
	}
	srv.stop(t)
	again := startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", data)
	if !strings.Contains(again.logs.String(), `"snapshot_keyid":"`+snap+`"`) || strings.Contains(again.logs.String(), "online key generated") {
		t.Fatalf("the keys changed across a restart:\n%s", again.logs)
	}
}
