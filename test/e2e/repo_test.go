package e2e

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/test/testsvc"
)

const testToken = "e2e-bootstrap-token"

// repoFixture is a running vigil-server with an initialised repository and
// product demo-pump, and the keys that built it.
type repoFixture struct {
	srv     *server
	keys    string // copy of keys-example
	tufDir  string // the CLI's verified cache
	dataDir string // the server's data dir (embedded default: blobs inside)
	tmp     string
}

func keysExample(t testing.TB) string {
	root, err := testsvc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "keys-example")
}

// newRepo starts vigil-server with the demo online keys and runs
// `vigil repo init` and `vigil repo add-product demo-pump`.
func newRepo(t testing.TB, env []string, args ...string) *repoFixture {
	t.Helper()
	f := &repoFixture{tmp: t.TempDir()}
	f.keys = filepath.Join(f.tmp, "keys")
	f.tufDir = filepath.Join(f.tmp, "cli-tuf")
	f.dataDir = filepath.Join(f.tmp, "server")
	copyDir(t, keysExample(t), f.keys)
	ke := keysExample(t)
	f.srv = startServer(t, append(env, "VIGIL_BOOTSTRAP_TOKEN="+testToken), append([]string{"--data-dir", f.dataDir,
		"--snapshot-key", filepath.Join(ke, "snapshot.key"), "--timestamp-key", filepath.Join(ke, "timestamp.key")}, args...)...)
	f.vigilOK(t, "repo", "init")
	f.vigilOK(t, "repo", "add-product", "demo-pump")
	return f
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// vigil runs the CLI against the fixture's server and keys.
func (f *repoFixture) vigil(t testing.TB, args ...string) (int, string) {
	t.Helper()
	args = append(args, "--server", f.srv.URL, "--keys-dir", f.keys, "--tuf-dir", f.tufDir)
	return runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", args...)
}

func (f *repoFixture) vigilOK(t testing.TB, args ...string) string {
	t.Helper()
	code, out := f.vigil(t, args...)
	if code != 0 {
		t.Fatalf("vigil %v: exit %d\n%s\nserver:\n%s", args, code, out, f.srv.logs)
	}
	return out
}

// image writes n random bytes to a new file.
func image(t testing.TB, dir string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	f, err := os.CreateTemp(dir, "image-*.img")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b)
	f.Close()
	return f.Name()
}

// publish publishes a random image as version v for hardware hw.
func (f *repoFixture) publish(t testing.TB, v, hw string, extra ...string) string {
	t.Helper()
	img := image(t, f.tmp, 64<<10)
	f.vigilOK(t, append([]string{"release", "publish", "--product", "demo-pump", "--version", v, "--file", img, "--hardware", hw}, extra...)...)
	return img
}

// device is one agent's data directory and identity.
type device struct {
	dir, hardware, installed string
}

func newDevice(t testing.TB, hw, installed string) *device {
	return &device{dir: filepath.Join(t.TempDir(), "device"), hardware: hw, installed: installed}
}

// check runs `vigil-agent check` against url (a server or a mirror).
func (d *device) check(t testing.TB, f *repoFixture, url string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"check", "--server", url, "--trusted-root", filepath.Join(f.keys, "trusted-root.json"),
		"--data-dir", d.dir, "--product", "demo-pump", "--hardware", d.hardware, "--installed-version", d.installed}, extra...)
	return runBin(t, nil, "vigil-agent", args...)
}

type checkJSON struct {
	Installable *struct {
		Target  string `json:"target"`
		SHA256  string `json:"sha256"`
		Release struct {
			Version string `json:"version"`
		} `json:"release"`
	} `json:"installable"`
	Downloaded string `json:"downloaded"`
}

func testPublishTwoVersionsAndDownloadTheNewer(t testing.TB, f *repoFixture) {
	f.publish(t, "1.0.0", "rev-b,rev-c")
	img2 := f.publish(t, "1.1.0", "rev-b", "--severity", "security", "--min-from-version", "0.9.0")

	out := f.vigilOK(t, "release", "list", "--product", "demo-pump", "-o", "json")
	var list []struct{ Version string }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Version != "1.1.0" {
		t.Fatalf("release list: %v %s", err, out)
	}

	d := newDevice(t, "rev-b", "1.0.0")
	code, out := d.check(t, f, f.srv.URL, "--download", "-o", "json")
	if code != 0 {
		t.Fatalf("agent check: exit %d\n%s", code, out)
	}
	var res checkJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Installable == nil || res.Installable.Release.Version != "1.1.0" {
		t.Fatalf("agent chose %s (%v)", out, err)
	}
	got, _ := os.ReadFile(res.Downloaded)
	want, _ := os.ReadFile(img2)
	if len(got) == 0 || string(got) != string(want) {
		t.Fatal("the downloaded image differs from the published one")
	}
}

func TestPublishAndVerifiedDownloadOnEmbeddedDefault(t *testing.T) {
	testPublishTwoVersionsAndDownloadTheNewer(t, newRepo(t, nil))
}

func TestPublishAndVerifiedDownloadOnPostgresAndS3(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	gw := testsvc.StartS3(t)
	f := newRepo(t, []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey},
		"--database-url", dsn, "--blob-url", gw.URL())
	testPublishTwoVersionsAndDownloadTheNewer(t, f)
}

func TestPublishRefusesBadInputAndKeepsTheRepository(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	before := snapshotFiles(t, f)
	img := image(t, f.tmp, 1024)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--version", "1.x", "--hardware", "rev-b"}, "not semantic versioning"},
		{[]string{"--version", "1.0.0", "--hardware", "rev-b"}, "already published"},
		{[]string{"--version", "2.0.0"}, "hardware"},
		{[]string{"--version", "2.0.0", "--hardware", "rev-b", "--severity", "urgent"}, "severity"},
		{[]string{"--version", "2.0.0", "--hardware", "rev-b", "--min-from-version", "3.0.0"}, "min_from_version"},
	} {
		code, out := f.vigil(t, append([]string{"release", "publish", "--product", "demo-pump", "--file", img}, c.args...)...)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("publish %v: exit %d, want an error naming %q:\n%s", c.args, code, c.want, out)
		}
	}
	// Wrong token: 401 and nothing changes.
	code, out := runBin(t, []string{"VIGIL_TOKEN=wrong"}, "vigil", "release", "publish", "--product", "demo-pump", "--file", img,
		"--version", "3.0.0", "--hardware", "rev-b", "--server", f.srv.URL, "--keys-dir", f.keys, "--tuf-dir", f.tufDir)
	if code == 0 || !strings.Contains(out, "401") {
		t.Errorf("wrong token: exit %d\n%s", code, out)
	}
	if after := snapshotFiles(t, f); after != before {
		t.Fatalf("a refused publish changed the repository metadata:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshotFiles lists the metadata files the server's timestamp reaches.
func snapshotFiles(t testing.TB, f *repoFixture) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dataDir, "blobs", "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mirror copies the server's published repository into a directory served
// by a plain file server, as an untrusted mirror or CDN would serve it.
// Attack tests tamper with the copy.
type mirror struct {
	dir string
	URL string
}

func newMirror(t testing.TB, f *repoFixture) *mirror {
	t.Helper()
	m := &mirror{dir: filepath.Join(t.TempDir(), "mirror")}
	copyDir(t, filepath.Join(f.dataDir, "blobs"), filepath.Join(m.dir, "repo"))
	os.RemoveAll(filepath.Join(m.dir, "repo", ".tmp"))
	hs := httptest.NewServer(http.FileServer(http.Dir(m.dir)))
	t.Cleanup(hs.Close)
	m.URL = hs.URL
	return m
}

func (m *mirror) path(rel string) string {
	return filepath.Join(m.dir, "repo", filepath.FromSlash(rel))
}

// trustedState reads a device's trusted metadata, to prove an attack left it
// unchanged.
func trustedState(t testing.TB, d *device) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "demo-pump.json"} {
		b, _ := os.ReadFile(filepath.Join(d.dir, "tuf", n))
		out[n] = string(b)
	}
	return out
}

func sameState(t testing.TB, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("the device's trusted %s changed after a refused attack", k)
		}
	}
}

// expectRefused asserts exit code 3 and a message naming the check.
func expectRefused(t testing.TB, code int, out, check string) {
	t.Helper()
	if code != 3 || !strings.Contains(out, check) {
		t.Fatalf("want exit 3 naming %q, got exit %d:\n%s", check, code, out)
	}
}

func TestConcurrentPublishesFromTwoServersLoseNothing(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	gw := testsvc.StartS3(t)
	env := []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey}
	f := newRepo(t, env, "--database-url", dsn, "--blob-url", gw.URL())
	// A second replica on the same database and bucket.
	ke := keysExample(t)
	second := startServer(t, append(env, "VIGIL_BOOTSTRAP_TOKEN="+testToken), "--data-dir", t.TempDir(), "--database-url", dsn, "--blob-url", gw.URL(),
		"--snapshot-key", filepath.Join(ke, "snapshot.key"), "--timestamp-key", filepath.Join(ke, "timestamp.key"))

	const perServer = 3
	type result struct {
		code int
		out  string
	}
	results := make(chan result, 2*perServer)
	for i, url := range []string{f.srv.URL, second.URL} {
		for j := range perServer {
			go func() {
				img := image(t, f.tmp, 32<<10)
				v := "2." + itoa(int64(i)) + "." + itoa(int64(j))
				code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "publish", "--product", "demo-pump",
					"--version", v, "--file", img, "--hardware", "rev-b", "--server", url, "--keys-dir", f.keys,
					"--tuf-dir", filepath.Join(f.tmp, "tuf-"+v))
				results <- result{code, out}
			}()
		}
	}
	for range 2 * perServer {
		if r := <-results; r.code != 0 {
			t.Fatalf("a concurrent publish failed: %s", r.out)
		}
	}
	out := f.vigilOK(t, "release", "list", "--product", "demo-pump", "-o", "json")
	var list []struct{ Version string }
	json.Unmarshal([]byte(out), &list)
	if len(list) != 2*perServer {
		t.Fatalf("%d releases after %d concurrent publishes:\n%s", len(list), 2*perServer, out)
	}
	// Every publish made its own snapshot: init (1) + add-product (2) + 6.
	ts, err := metadata.Timestamp().FromBytes(getBytes(t, f.srv.URL+"/repo/metadata/timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v := ts.Signed.Meta["snapshot.json"].Version; v != 2+2*perServer {
		t.Fatalf("snapshot version %d, want %d: a publish was merged or lost", v, 2+2*perServer)
	}
}

func getBytes(t testing.TB, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return b
}

func TestRootAndProductKeyRotationKeepDevicesUpdating(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	// A device that trusts root v1 and has refreshed once.
	d := newDevice(t, "rev-b", "0.9.0")
	if code, out := d.check(t, f, f.srv.URL); code != 0 {
		t.Fatalf("refresh: %d %s", code, out)
	}
	bootstrap := mustRead(t, filepath.Join(f.keys, "trusted-root.json"))

	newKeys := filepath.Join(f.tmp, "new-keys")
	if code, out := runBin(t, nil, "vigil", "keys", "generate", "root-a", "root-b", "product-demo-pump-2", "--dir", newKeys); code != 0 {
		t.Fatal(out)
	}
	code, out := f.vigil(t, "repo", "rotate", "root", "--new-key", filepath.Join(newKeys, "root-a.key"), "--new-key", filepath.Join(newKeys, "root-b.key"), "--threshold", "2")
	if code != 2 || !strings.Contains(out, "--yes") {
		t.Fatalf("rotation without --yes: %d %s", code, out)
	}
	if out := f.vigilOK(t, "repo", "rotate", "root", "--new-key", filepath.Join(newKeys, "root-a.key"), "--new-key", filepath.Join(newKeys, "root-b.key"), "--threshold", "2", "--dry-run"); !strings.Contains(out, "root=v2") || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %s", out)
	}
	f.vigilOK(t, "repo", "rotate", "root", "--new-key", filepath.Join(newKeys, "root-a.key"), "--new-key", filepath.Join(newKeys, "root-b.key"), "--threshold", "2", "--yes")
	f.vigilOK(t, "repo", "rotate", "product", "demo-pump", "--new-key", filepath.Join(newKeys, "product-demo-pump-2.key"), "--yes")

	// The old product key no longer publishes: the CLI says so before
	// uploading anything.
	img := image(t, f.tmp, 1024)
	code, out = f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", img, "--hardware", "rev-b")
	if code != 2 || !strings.Contains(out, "is not a key of product demo-pump") || !strings.Contains(out, "nothing was uploaded") {
		t.Fatalf("publish with the rotated-out product key: exit %d\n%s", code, out)
	}
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", img, "--hardware", "rev-b",
		"--key", filepath.Join(newKeys, "product-demo-pump-2.key"))

	// The device walks from root v1 to v2 and takes the release signed with the new key.
	code, out = d.check(t, f, f.srv.URL, "-o", "json")
	if code != 0 || !strings.Contains(out, `"version": "1.1.0"`) {
		t.Fatalf("device after rotation: %d %s", code, out)
	}
	root, err := metadata.Root().FromBytes(mustRead(t, filepath.Join(d.dir, "tuf", "root.json")))
	if err != nil || root.Signed.Version != 2 {
		t.Fatalf("device's trusted root: %v %v", root, err)
	}
	// A new device shipped with root v1 also walks to v2.
	os.WriteFile(filepath.Join(f.keys, "trusted-root.json"), bootstrap, 0o644)
	fresh := newDevice(t, "rev-b", "1.0.0")
	if code, out := fresh.check(t, f, f.srv.URL); code != 0 || !strings.Contains(out, "1.1.0") {
		t.Fatalf("fresh device from root v1: %d %s", code, out)
	}
}

func TestPublishDryRunSignsButChangesNothing(t *testing.T) {
	f := newRepo(t, nil)
	before := snapshotFiles(t, f)
	img := image(t, f.tmp, 4096)
	out := f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", img, "--hardware", "rev-b", "--dry-run")
	if !strings.Contains(out, "would be published") || !strings.Contains(out, "demo-pump=v2") {
		t.Fatalf("dry run output: %s", out)
	}
	if after := snapshotFiles(t, f); after != before {
		t.Fatal("a dry run changed the repository")
	}
	if m, _ := filepath.Glob(filepath.Join(f.dataDir, "blobs", "targets", "demo-pump", "*")); len(m) != 0 {
		t.Fatalf("a dry run uploaded %v", m)
	}
}
