package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// canonical is the order install states happen in.
var canonical = []string{"downloading", "verified", "deferred", "staging", "staged", "switching", "switched", "committing", "committed", "rolling_back", "rolled_back", "failed"}

// truthful checks that reported states never go backwards through the
// canonical order (repeats after a crash are allowed), so no event claims a
// step before the steps it depends on.
func truthful(t testing.TB, got string) {
	t.Helper()
	pos := map[string]int{}
	for i, s := range canonical {
		pos[s] = i
	}
	last := -1
	for _, s := range strings.Split(got, ",") {
		p, ok := pos[s]
		if !ok {
			t.Fatalf("unknown state %q in %s", s, got)
		}
		if p < last && !(s == "switched" && last == pos["switched"]) {
			// A repeat of an earlier step is only possible by re-running
			// it after a crash; it must not follow a later step.
			t.Fatalf("events go backwards at %q: %s", s, got)
		}
		last = max(last, p)
	}
}

// consistent checks the device right after a crash: the journal parses, one
// slot is active, and it holds either the old release or the whole new one.
func consistent(t testing.TB, d *agentDevice) agentStatus {
	t.Helper()
	s := d.status(t) // fails if the journal does not parse
	if s.Active != "a" && s.Active != "b" {
		t.Fatalf("no consistent active slot: %+v", s)
	}
	v, err := os.ReadFile(filepath.Join(d.slots, "current", "VERSION"))
	if err != nil {
		t.Fatalf("the active slot is not readable: %v", err)
	}
	running := strings.TrimSpace(string(v))
	if running != s.Slots[s.Active] || (running != "1.0.0" && running != "1.1.0") {
		t.Fatalf("running %q, active slot %s records %q", running, s.Active, s.Slots[s.Active])
	}
	return s
}

// TestCrashAtEveryInstallStepEndsConsistent kills the agent (SIGKILL,
// through VIGIL_AGENT_FAILPOINT) at every step of an install, checks the
// device right after, restarts it, and checks it ends committed on the new
// release with events that tell the truth.
func TestCrashAtEveryInstallStepEndsConsistent(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 1<<20))
	points := []string{"download-mid", "downloaded", "staging", "unpack-mid", "staged", "switched-before-journal", "switched", "health-check", "healthy", "marked-good"}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			d := newAgentDevice(t, f, f.srv.URL, "", nil)
			code, out := d.once(t, "VIGIL_AGENT_FAILPOINT="+point)
			if code != -1 {
				t.Fatalf("the agent was not killed at %s (exit %d):\n%s", point, code, out)
			}
			before := consistent(t, d)
			if code, out := d.once(t); code != 0 {
				t.Fatalf("restart after a crash at %s: %d\n%s", point, code, out)
			}
			s := consistent(t, d)
			if s.Phase != "committed" || s.Active != "b" || s.Installed != "1.1.0" {
				t.Fatalf("crash at %s (state then %s): ended %+v", point, before.Phase, s)
			}
			got := states(serverEvents(t, f, d.id))
			truthful(t, got)
			if !strings.HasSuffix(got, "committed") || strings.Contains(got, "rolled_back") || strings.Contains(got, "failed") {
				t.Fatalf("crash at %s: events %s", point, got)
			}
		})
	}
}

func TestCrashDuringRollbackStillRollsBack(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", false, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, _ := d.once(t, "VIGIL_AGENT_FAILPOINT=rolling-back"); code != -1 {
		t.Fatal("not killed at rolling-back")
	}
	if s := consistent(t, d); s.Phase != "rolling_back" {
		t.Fatalf("after the crash: %+v", s)
	}
	d.once(t)
	s := consistent(t, d)
	if s.Phase != "rolled_back" || s.Active != "a" || s.Installed != "1.0.0" {
		t.Fatalf("ended %+v", s)
	}
	truthful(t, states(serverEvents(t, f, d.id)))
}

func TestCrashInsideTheHealthCheckIsRetriedThenCommits(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	var d *agentDevice
	mark := filepath.Join(t.TempDir(), "crashed-once")
	// The health check itself kills the agent the first time it runs.
	health := `if [ ! -f ` + mark + ` ]; then touch ` + mark + `; kill -9 $PPID; sleep 5; fi; `
	d = newAgentDevice(t, f, f.srv.URL, "HEALTH", nil)
	b, _ := os.ReadFile(d.config)
	os.WriteFile(d.config, []byte(strings.Replace(string(b), `"HEALTH"`, `"`+strings.ReplaceAll(health+healthCommand(d.slots), `"`, `\"`)+`"`, 1)), 0o600)
	if code, _ := d.once(t); code == 0 {
		t.Fatal("the agent survived its health check killing it")
	}
	if s := consistent(t, d); s.Phase != "switched" || s.Active != "b" {
		t.Fatalf("after the crash: %+v", s)
	}
	d.once(t)
	if s := consistent(t, d); s.Phase != "committed" || s.Installed != "1.1.0" {
		t.Fatalf("ended %+v", s)
	}
}

func TestRebootLoopEndsInRollbackAfterMaxAttempts(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "kill -9 $PPID; sleep 5", nil)
	runs := 0
	for ; runs < 8; runs++ {
		d.once(t)
		if s := d.status(t); s.Phase == "rolled_back" {
			break
		}
	}
	s := consistent(t, d)
	if s.Phase != "rolled_back" || s.Active != "a" || !strings.Contains(s.Reason, "within 3 attempts") {
		t.Fatalf("after %d runs: %+v", runs+1, s)
	}
	if runs+1 != 4 {
		t.Fatalf("rolled back after %d starts, want 4 (the switch plus 3 attempts)", runs+1)
	}
}
