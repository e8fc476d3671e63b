package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/vigil-ota/vigil/test/testsvc"
)

// TestDemoRunsTheWholeStory runs `make demo`'s script as a new user would
// and checks its ending: two pumps committed, one rolled back, the audit
// chain verified, the demo release's five findings (Heartbleed KEV-listed,
// fixed in 1.1.0) and its exposure: the one pump that rolled back.
func TestDemoRunsTheWholeStory(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	root, _ := testsvc.ModuleRoot()
	cmd := exec.Command("bash", filepath.Join(root, "test", "demo", "demo.sh"))
	cmd.Env = append(cleanEnv(), "BIN="+binDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`all\s+st-mary\s+3\s+true\s+3\s+0\s+0\s+2\s+1\s+0`).Match(out) || !regexp.MustCompile(`audit chain verified`).Match(out) {
		t.Fatalf("the demo did not end as told (2 committed, 1 rolled back):\n%s", out)
	}
	for _, want := range []string{`CVE-2014-0160\s+yes\s+demo-pump@1.0.0\s+openssl 1.0.1f\s+untriaged\s+open\s+1\s+demo-pump@1.1.0`, `5 finding\(s\)`,
		`st-mary\s+demo-pump@1.0.0\s+1\ntotal: 1 device`, `fixing release of demo-pump: 1.1.0`, `console: +http://127.0.0.1:\d+/console/`,
		`sign in as st-mary's IT: vgl_[0-9a-f]+_[0-9a-f]+`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Fatalf("the demo does not end with the findings and exposure (%s):\n%s", want, out)
		}
	}
}
