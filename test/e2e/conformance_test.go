package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/tuftest"
)

// The cases of the public tuf-conformance suite that no reference client
// passed, driven through the same command line the suite uses
// (CLIENT-CLI.md: init, refresh, download; exit 0 or 1), against a signed
// repository served in-process. The whole suite needs Python; see
// docs/trust-model.md for running it by hand.

type conformanceClient struct {
	t                 *testing.T
	md, targets, root string
	repo              *tuftest.Repo
}

func newConformanceClient(t *testing.T, r *tuftest.Repo) *conformanceClient {
	c := &conformanceClient{t: t, md: filepath.Join(t.TempDir(), "metadata"), targets: filepath.Join(t.TempDir(), "targets"), repo: r}
	os.MkdirAll(c.targets, 0o700)
	c.root = filepath.Join(t.TempDir(), "initial_root.json")
	os.WriteFile(c.root, r.TrustedRoot(), 0o600)
	if code, out := runBin(t, nil, "vigil-agent", "tuf-client", "--metadata-dir", c.md, "init", c.root); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	return c
}

func (c *conformanceClient) download(names ...string) int {
	args := []string{"tuf-client", "--metadata-dir", c.md, "--metadata-url", c.repo.MetadataURL(), "--target-base-url", c.repo.TargetsURL(), "--target-dir", c.targets}
	for _, n := range names {
		args = append(args, "--target-name", n)
	}
	code, _ := runBin(c.t, nil, "vigil-agent", append(args, "download")...)
	return code
}

// downloaded lists the contents of the files in the target dir.
func (c *conformanceClient) downloaded() []string {
	var out []string
	entries, _ := os.ReadDir(c.targets)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(c.targets, e.Name()))
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// test_cached_role_is_verified_against_current_delegator.
func TestConformanceCachedRoleIsVerifiedAgainstCurrentDelegator(t *testing.T) {
	r := tuftest.New(t)
	r.Delegate(metadata.TARGETS, "parent-a", []string{"team-a/*"}, false)
	r.Delegate(metadata.TARGETS, "parent-b", []string{"team-b/*"}, false)
	ka := r.Delegate("parent-a", "release", []string{"team-a/*"}, false)
	r.Delegate("parent-b", "release", []string{"team-b/*"}, false)
	r.Keys["release"] = ka
	r.AddTarget("release", "team-a/trusted_root.json", []byte("trusted A"), nil)
	r.AddTarget("release", "team-b/trusted_root.json", []byte("malicious B"), nil)
	r.Publish()
	c := newConformanceClient(t, r)
	if code := c.download("team-a/trusted_root.json", "team-b/trusted_root.json"); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if got := c.downloaded(); !slices.Equal(got, []string{"trusted A"}) && len(got) != 0 {
		t.Fatalf("target dir holds %q", got)
	}
}

// test_download_with_hash_algorithms (sha256, sha512, both) and
// test_download_with_unknown_hash_algorithm.
func TestConformanceDownloadWithHashAlgorithms(t *testing.T) {
	for _, c := range []struct {
		algs []string
		code int
	}{{[]string{"sha256"}, 0}, {[]string{"sha512"}, 0}, {[]string{"sha256", "sha512"}, 0}, {[]string{"unknown-hash"}, 1}} {
		r := tuftest.New(t)
		r.AddTarget(metadata.TARGETS, "target_file.txt", []byte("target file contents"), nil, c.algs...)
		r.Publish()
		cl := newConformanceClient(t, r)
		if code := cl.download("target_file.txt"); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.algs, code, c.code)
		}
		want := []string{"target file contents"}
		if c.code != 0 {
			want = nil
		}
		if got := cl.downloaded(); !slices.Equal(got, want) {
			t.Errorf("%v: target dir holds %q", c.algs, got)
		}
	}
}
