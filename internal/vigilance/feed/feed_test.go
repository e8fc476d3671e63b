package feed_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance/feed"
)

func writeZip(t *testing.T, files map[string][]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "feed.zip")
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, b := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	zw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A zip entry that unpacks past MaxFileBytes stops at the limit, whatever
// its header claims (a zip bomb); nothing is extracted to disk.
func TestAZipBombStopsAtTheFileLimit(t *testing.T) {
	p := writeZip(t, map[string][]byte{"bomb.json": bytes.Repeat([]byte{' '}, feed.MaxFileBytes+1)})
	var got error
	for _, err := range feed.Files(p) {
		if err != nil {
			got = err
		}
	}
	if !errors.Is(got, feed.ErrLimit) {
		t.Fatalf("bomb: %v", got)
	}
}

func TestOnlyJSONFilesAreReadAndLinksAreNotFollowed(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.json")
	os.WriteFile(outside, []byte(`{"id":"SECRET"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"id":"A"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a record"), 0o600)
	if err := os.Symlink(outside, filepath.Join(dir, "link.json")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "sub"), 0o700)
	os.WriteFile(filepath.Join(dir, "sub", "b.JSON"), []byte(`{"id":"B"}`), 0o600)
	var names []string
	for f, err := range feed.Files(dir) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "a.json,sub/b.JSON" {
		t.Fatalf("read %v", names)
	}
}

func TestMalformedRecordsAreReportedAndTheRestAreRead(t *testing.T) {
	p := writeZip(t, map[string][]byte{
		"GO-1.json":   []byte(`{"id":"GO-1","modified":"2026-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"example.com/m"}}]}`),
		"GO-2.json":   []byte(`{"id":"GO-2","modified":"not a time"}`),
		"GO-3.json":   []byte("\xff\xfe{not json"),
		"GO-4.json":   []byte(`{"modified":"2026-01-01T00:00:00Z"}`),
		"GO-5.json":   []byte(`{"id":"` + strings.Repeat("X", 200) + `"}`),
		"GO-6.json":   []byte(`{"id":"GO-6","aliases":[` + strings.Repeat(`"A",`, 1000) + `"A"]}`),
		"README.md":   []byte("ignored"),
		"nested.json": []byte(`[{"id":"GO-7"}]`),
	})
	var good []string
	bad := map[string]string{}
	for it := range feed.Records(feed.KindOSV, p) {
		if it.Fatal {
			t.Fatalf("fatal: %v", it.Err)
		}
		if it.Err != nil {
			bad[it.File] = it.ID
			continue
		}
		good = append(good, it.Record.ID)
	}
	if strings.Join(good, ",") != "GO-1" || len(bad) != 6 || bad["GO-2.json"] != "GO-2" || bad["GO-6.json"] != "GO-6" || bad["GO-5.json"] != "" {
		t.Fatalf("good %v, bad %v", good, bad)
	}
}

func TestAnNVDPageSkipsItsMalformedRecordsOnly(t *testing.T) {
	page := `{"resultsPerPage":3,"vulnerabilities":[
		{"cve":{"id":"CVE-2099-0001","vulnStatus":"Analyzed","configurations":[{"nodes":[{"cpeMatch":[{"vulnerable":true,"criteria":"cpe:2.3:a:acme:pump:1.0:*:*:*:*:*:*:*"}]}]}]}},
		{"cve":{"id":"CVE-2099-0002","configurations":[{"nodes":[{"cpeMatch":[{"vulnerable":true,"criteria":"cpe:2.3:a:acme"}]}]}]}},
		{"cve":{"id":"not-a-cve"}}]}`
	p := filepath.Join(t.TempDir(), "page.json")
	os.WriteFile(p, []byte(page), 0o600)
	var good, bad []string
	for it := range feed.Records(feed.KindNVD, p) {
		if it.Err != nil {
			bad = append(bad, it.ID)
			continue
		}
		good = append(good, it.Record.ID)
	}
	if strings.Join(good, ",") != "CVE-2099-0001" || strings.Join(bad, ",") != "CVE-2099-0002,not-a-cve" {
		t.Fatalf("good %v bad %v", good, bad)
	}
}

func TestAFeedThatIsNotThereOrNotAZipIsFatal(t *testing.T) {
	for _, p := range []string{filepath.Join(t.TempDir(), "missing"), func() string {
		p := filepath.Join(t.TempDir(), "fake.zip")
		os.WriteFile(p, []byte("PK not really"), 0o600)
		return p
	}()} {
		for it := range feed.Records(feed.KindOSV, p) {
			if !it.Fatal || it.Err == nil {
				t.Fatalf("%s: %+v", p, it)
			}
		}
	}
}
