package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocumentedCommandLinesParse: every vigil-fleetsim line in the docs
// uses flags the command has, with values it accepts.
func TestDocumentedCommandLinesParse(t *testing.T) {
	docs, _ := filepath.Glob(filepath.Join("..", "..", "..", "docs", "*.md"))
	found := 0
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "vigil-fleetsim --") {
				continue
			}
			found++
			args := strings.Fields(strings.ReplaceAll(strings.TrimPrefix(line, "vigil-fleetsim"), `"$VIGIL_TOKEN"`, "t"))
			if err := newCommand(&bytes.Buffer{}, &bytes.Buffer{}).ParseFlags(args); err != nil {
				t.Errorf("%s: %q: %v", filepath.Base(d), line, err)
			}
		}
	}
	if found == 0 {
		t.Fatal("no vigil-fleetsim command line in docs/")
	}
}

func TestBadUsageExitsTwoNamingTheProblem(t *testing.T) {
	for args, want := range map[string]string{
		"--devices 0 --sites a --server http://127.0.0.1:1":             "--devices 0",
		"--sites a --server http://192.0.2.1:80":                        "not a loopback address",
		"--bogus":                                                       "unknown flag",
		"--sites a --server http://127.0.0.1:1 extra":                   "unexpected argument",
		"--sites a --server http://127.0.0.1:1 --fail-share 2":          "--fail-share",
		"--sites a --server http://127.0.0.1:1 --rate 0":                "--rate",
		"--server http://127.0.0.1:1":                                   "--sites",
		"--sites a --server http://127.0.0.1:1 --devices 9999999999999": "--devices",
	} {
		var stderr bytes.Buffer
		if code := run(strings.Fields(args), &bytes.Buffer{}, &stderr); code != exitUsage || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: exit %d, %q (want 2 naming %q)", args, code, stderr.String(), want)
		}
	}
}
