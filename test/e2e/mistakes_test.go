package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/api"
)

// The common mistakes of a release engineer end in messages that say what
// happened and what to do, with the documented exit codes (2 bad input, 3
// refused for security, 1 other), and change nothing.
func TestReleaseEngineersMistakesGetClearErrors(t *testing.T) {
	f := newRepo(t, nil)
	before := snapshotFiles(t, f)

	// repo init twice
	if code, out := f.vigil(t, "repo", "init"); code != 1 || !strings.Contains(out, "already initialised") || !strings.Contains(out, "vigil repo rotate") {
		t.Errorf("init twice: exit %d %s", code, out)
	}
	// a product key that does not exist: the command that makes it
	noKeys := filepath.Join(t.TempDir(), "keys")
	os.MkdirAll(noKeys, 0o700)
	copyFile(t, filepath.Join(f.keys, "trusted-root.json"), filepath.Join(noKeys, "trusted-root.json"))
	img := image(t, f.tmp, 4096)
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", img,
		"--hardware", "rev-b", "--server", f.srv.URL, "--keys-dir", noKeys, "--tuf-dir", f.tufDir)
	if code != 2 || !strings.Contains(out, "vigil keys generate product-demo-pump --dir "+noKeys) {
		t.Errorf("a missing product key: exit %d %s", code, out)
	}
	// a key that is not the product's: caught before the image is uploaded
	other := t.TempDir()
	runBin(t, nil, "vigil", "keys", "generate", "intruder", "--dir", other)
	if code, out := f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", img, "--hardware", "rev-b",
		"--key", filepath.Join(other, "intruder.key")); code != 2 || !strings.Contains(out, "is not a key of product demo-pump") || !strings.Contains(out, "nothing was uploaded") {
		t.Errorf("a key that is not the product's: exit %d %s", code, out)
	}
	if uploads, _ := filepath.Glob(filepath.Join(f.dataDir, "blobs", "targets", "demo-pump", "*")); len(uploads) != 0 {
		t.Errorf("the image was uploaded anyway: %v", uploads)
	}
	// a trusted root from another repository
	code, out = runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "list", "--server", f.srv.URL,
		"--trusted-root", filepath.Join(foreignKeys(t), "trusted-root.json"), "--tuf-dir", t.TempDir())
	if code != 3 || !strings.Contains(out, "is not this repository's trusted root") {
		t.Errorf("a foreign trusted root: exit %d %s", code, out)
	}
	if after := snapshotFiles(t, f); after != before {
		t.Fatal("a refused command changed the repository")
	}

	// a version lower than the newest: published, with a warning
	f.publish(t, "2.0.0", "rev-b")
	if out := f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.5.0", "--file", image(t, f.tmp, 4096), "--hardware", "rev-b"); !strings.Contains(out, "warning: 1.5.0 is older than the newest release 2.0.0: devices on 2.0.0 or newer will never install it") {
		t.Errorf("a lower version: %s", out)
	}

	// the server goes away while the submission is in flight
	target, _ := url.Parse(f.srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.RouteSubmit {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // gone, without an answer
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	before = snapshotFiles(t, f)
	img3 := image(t, f.tmp, 4096)
	publish3 := []string{"release", "publish", "--product", "demo-pump", "--version", "3.0.0", "--file", img3, "--hardware", "rev-b", "--keys-dir", f.keys, "--tuf-dir", f.tufDir}
	code, out = runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", append(publish3, "--server", flaky.URL)...)
	if code != 1 || !strings.Contains(out, "the server did not confirm the publish: nothing was published unless it says so when you run the same command again, which is safe") {
		t.Errorf("the server gone mid-publish: exit %d %s", code, out)
	}
	if after := snapshotFiles(t, f); after != before {
		t.Fatal("a publish the server never received changed the repository")
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", append(publish3, "--server", f.srv.URL)...); code != 0 {
		t.Errorf("running the same command again: exit %d %s", code, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(to, b, 0o644)
}

// foreignKeys initialises another repository with root keys of its own
// (every fixture shares the demo root) and returns its keys directory.
func foreignKeys(t *testing.T) string {
	dir := t.TempDir()
	if code, out := runBin(t, nil, "vigil", "keys", "generate", "root-1", "root-2", "root-3", "targets", "--dir", dir); code != 0 {
		t.Fatal(out)
	}
	copyFile(t, filepath.Join(keysExample(t), "snapshot.pub"), filepath.Join(dir, "snapshot.pub"))
	copyFile(t, filepath.Join(keysExample(t), "timestamp.pub"), filepath.Join(dir, "timestamp.pub"))
	fresh := startServer(t, []string{"VIGIL_BOOTSTRAP_TOKEN=" + testToken}, "--data-dir", t.TempDir(),
		"--snapshot-key", filepath.Join(keysExample(t), "snapshot.key"), "--timestamp-key", filepath.Join(keysExample(t), "timestamp.key"))
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "repo", "init", "--server", fresh.URL, "--keys-dir", dir, "--tuf-dir", t.TempDir()); code != 0 {
		t.Fatal(out)
	}
	return dir
}
