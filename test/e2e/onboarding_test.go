package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/test/testsvc"
)

// Onboarding works the first time: the example CSV of docs/onboarding.md
// (a PEM key as a quoted multi-line cell, and a key's base64 body) imports;
// importing it again changes nothing; a row that differs from its
// registered device is refused naming the line and the field; `device
// register` takes the .pub file and '|'-separated tags like the CSV.
func TestDevicesAreOnboardedFromTheDocumentedCSV(t *testing.T) {
	f := newRepo(t, nil)
	root, _ := testsvc.ModuleRoot()
	example := filepath.Join(root, "docs", "examples", "devices.csv")
	env := []string{"VIGIL_TOKEN=" + testToken}
	vigil := func(args ...string) (int, string) {
		return runBin(t, env, "vigil", append(args, "--server", f.srv.URL)...)
	}
	if code, out := vigil("site", "put", "st-mary", "--time-zone", "America/Chicago"); code != 0 {
		t.Fatal(out)
	}
	if code, out := vigil("device", "import", example); code != 0 || !strings.Contains(out, "2 devices registered, 0 already registered") {
		t.Fatalf("first import: %d %s", code, out)
	}
	if code, out := vigil("device", "import", example); code != 0 || !strings.Contains(out, "0 devices registered, 2 already registered and unchanged") {
		t.Fatalf("the same import again: %d %s", code, out)
	}
	b, _ := os.ReadFile(example)
	changed := filepath.Join(t.TempDir(), "changed.csv")
	os.WriteFile(changed, []byte(strings.Replace(string(b), ",oncology,", ",icu,", 1)), 0o600)
	if code, out := vigil("device", "import", changed); code == 0 || !strings.Contains(out, "line 5") || !strings.Contains(out, "care_area") {
		t.Fatalf("a changed row: %d %s", code, out)
	}
	keys := t.TempDir()
	if code, out := runBin(t, nil, "vigil", "keys", "generate", "pump-9", "--dir", keys); code != 0 {
		t.Fatal(out)
	}
	reg := []string{"device", "register", "--id", "PUMP-0009", "--product", "demo-pump", "--hardware", "rev-b", "--site", "st-mary", "--public-key", filepath.Join(keys, "pump-9.pub")}
	if code, out := vigil(append(reg, "--tags", "ward-3,night")...); code != 2 || !strings.Contains(out, "separate tags with '|'") {
		t.Fatalf("comma-separated tags: %d %s", code, out)
	}
	if code, out := vigil(append(reg, "--tags", "ward-3|night")...); code != 0 {
		t.Fatalf("register: %d %s", code, out)
	}
	if code, out := vigil("device", "list", "--site", "st-mary"); code != 0 || !strings.Contains(out, "PUMP-0009") || !strings.Contains(out, "PUMP-0001") {
		t.Fatalf("list: %d %s", code, out)
	}
}
