package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// TestStockGoTUFUpdaterReadsTheRepository proves the published layout is
// plain TUF: go-tuf's own Updater, with nothing of Vigil's, refreshes the
// metadata and downloads a small target through DownloadTarget.
func TestStockGoTUFUpdaterReadsTheRepository(t *testing.T) {
	f := newRepo(t, nil)
	img := f.publish(t, "1.0.0", "rev-b")

	root := mustRead(t, filepath.Join(f.keys, "trusted-root.json"))
	cfg, err := config.New(f.srv.URL+"/repo/metadata", root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.LocalMetadataDir = filepath.Join(dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	cfg.RemoteTargetsURL = f.srv.URL + "/repo/targets"
	cfg.PrefixTargetsWithHash = true
	fe := fetcher.NewDefaultFetcher()
	fe.SetHTTPClient(&http.Client{Timeout: 30 * time.Second})
	cfg.Fetcher = fe
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock go-tuf refresh: %v", err)
	}
	tf, err := up.GetTargetInfo("demo-pump/demo-pump-1.0.0.img")
	if err != nil {
		t.Fatalf("stock go-tuf target lookup: %v", err)
	}
	path, data, err := up.DownloadTarget(tf, "", "")
	if err != nil {
		t.Fatalf("stock go-tuf DownloadTarget: %v", err)
	}
	want, _ := os.ReadFile(img)
	if !bytes.Equal(data, want) {
		t.Fatal("go-tuf downloaded different bytes")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestConformanceClientInitRefreshDownload drives `vigil-agent tuf-client`
// the way the public tuf-conformance suite does.
func TestConformanceClientInitRefreshDownload(t *testing.T) {
	f := newRepo(t, nil)
	img := f.publish(t, "1.0.0", "rev-b")
	md, targets := filepath.Join(t.TempDir(), "md"), filepath.Join(t.TempDir(), "targets")
	os.MkdirAll(targets, 0o700)
	run := func(args ...string) {
		t.Helper()
		if code, out := runBin(t, nil, "vigil-agent", append([]string{"tuf-client", "--metadata-dir", md}, args...)...); code != 0 {
			t.Fatalf("tuf-client %v: exit %d\n%s", args, code, out)
		}
	}
	run("init", filepath.Join(f.keys, "trusted-root.json"))
	run("--metadata-url", f.srv.URL+"/repo/metadata", "refresh")
	for _, n := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(md, n)); err != nil {
			t.Errorf("metadata dir lacks %s after refresh", n)
		}
	}
	run("--metadata-url", f.srv.URL+"/repo/metadata", "--target-name", "demo-pump/demo-pump-1.0.0.img",
		"--target-base-url", f.srv.URL+"/repo/targets", "--target-dir", targets, "download")
	got, _ := os.ReadFile(filepath.Join(targets, "demo-pump%2Fdemo-pump-1.0.0.img"))
	want, _ := os.ReadFile(img)
	if !bytes.Equal(got, want) {
		t.Fatal("tuf-client download differs from the published image")
	}
	code, _ := runBin(t, nil, "vigil-agent", "tuf-client", "--metadata-dir", md, "--metadata-url", f.srv.URL+"/repo/metadata",
		"--target-name", "demo-pump/nope.img", "--target-base-url", f.srv.URL+"/repo/targets", "--target-dir", targets, "download")
	if code == 0 {
		t.Fatal("downloading an unknown target succeeded")
	}
}
