package settingsdoc_test

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// Every VIGIL_* variable a document names exists: a setting, listed in
// docs/configuration.md (each program's test checks its table against the
// code), or a variable the code itself reads or sets (the agent's hook
// environment, the test tooling), found as a literal in the Go sources or
// the Makefile. Anything else is a stale doc.
func TestDocumentedVariablesExist(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	conf, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range regexp.MustCompile("`(VIGIL_[A-Z0-9_]+)`").FindAllStringSubmatch(string(conf), -1) {
		known[v[1]] = true
	}
	code := map[string]bool{}
	literal := regexp.MustCompile(`"(VIGIL_[A-Z0-9_]+)[="]|\b(VIGIL_[A-Z0-9_]+)\b`)
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || (d.IsDir() && strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") || filepath.Base(p) == "Makefile" || strings.HasSuffix(p, ".sh") {
			b, _ := os.ReadFile(p)
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				code[m[1]+m[2]] = true
			}
		}
		return nil
	})
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	word := regexp.MustCompile(`VIGIL_[A-Z0-9_]*[A-Z0-9]`)
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range word.FindAllString(string(b), -1) {
			if !known[v] && !code[v] {
				t.Errorf("%s names %s, which no program reads", filepath.Base(d), v)
			}
		}
	}
}

// Every relative link of the docs and the README points at a file inside
// the repository that exists.
func TestDocLinksStayInsideTheRepositoryAndResolve(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root, _ := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, d := range docs {
		b, _ := os.ReadFile(d)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Clean(filepath.Join(filepath.Dir(d), target))
			if !strings.HasPrefix(p, root+string(filepath.Separator)) {
				t.Errorf("%s links %s, outside the repository", filepath.Base(d), target)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links %s, which does not exist", filepath.Base(d), target)
			}
		}
	}
}
