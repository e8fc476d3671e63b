// Package settingsdoc keeps the generated tables of docs/configuration.md in
// step with the settings each program declares; only tests import it.
package settingsdoc

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vigil-ota/vigil/internal/settings"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated sections of docs/ instead of comparing them")

// CheckDocSection compares section name of docs/configuration.md (found
// from the module root) with body; with -update-docs it rewrites the
// section instead. Each program's tests call it, so a setting added,
// renamed or re-documented without `make docs` fails the suite.
func CheckDocSection(t testing.TB, name, body string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "configuration.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := settings.ReplaceSection(string(doc), name, body)
	if err != nil {
		t.Fatal(err)
	}
	if want == string(doc) {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/configuration.md section %q is out of date with the code: run `make docs`", name)
}
