package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/interlock"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
)

// A release revoked (its product role re-signed without it) after the
// device downloaded it, or after it staged it while the device was in
// clinical use, is never installed or switched to: the agent re-reads the
// signed metadata before each step that changes what runs, drops the
// release, and keeps running the old one.
func TestARevokedReleaseIsNeverInstalledOrSwitchedTo(t *testing.T) {
	for _, tc := range []struct {
		name      string
		busyAt    string // the failpoint at which the device becomes busy ("" : busy from the start)
		waitPhase journal.Phase
	}{
		{"DownloadedWhileInUse", "", journal.Deferred},
		{"StagedWhileInUse", "staged", journal.Staged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r := publishRelease(t, nil)
			d := newDevice(t, r, true)
			busy := filepath.Join(t.TempDir(), "in-use")
			if tc.busyAt == "" {
				os.WriteFile(busy, []byte("infusion running"), 0o644)
			}
			hook := func(name string) {
				if name == tc.busyAt {
					os.WriteFile(busy, []byte("infusion running"), 0o644)
				}
			}
			e, err := engine.New(engine.Config{
				DeviceID: "PUMP-1", Product: "demo-pump", Hardware: "rev-b", DataDir: d.data,
				Server: r.URL(), TrustedRoot: r.TrustedRoot(),
				Slots: &slot.Dir{Root: d.slots}, Failpoint: hook,
				Interlock: interlock.Interlock{File: busy},
				Health:    func(context.Context, string, string) error { return nil },
				Now:       func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Check(ctx); err != nil {
				t.Fatal(err)
			}
			if got := e.State().Phase; got != tc.waitPhase {
				t.Fatalf("waiting in %s, want %s", got, tc.waitPhase)
			}
			// The release engineer revokes 1.1.0; the therapy ends.
			for path := range r.Roles["demo-pump"].Signed.Targets {
				delete(r.Roles["demo-pump"].Signed.Targets, path)
			}
			r.Touch("demo-pump")
			r.Publish()
			os.Remove(busy)
			if err := e.Check(ctx); err != nil {
				t.Fatal(err)
			}
			st := e.State()
			if st.Phase != journal.Failed || st.Reason != engine.ReasonRevoked {
				t.Fatalf("ended %s (%s), want failed: %s", st.Phase, st.Reason, engine.ReasonRevoked)
			}
			checkOneConsistentSlot(t, d, "a", "1.0.0")
			// And it is not picked up again by a later check.
			if err := e.Check(ctx); err != nil || e.State().Phase != journal.Failed {
				t.Fatalf("a later check: %s %v", e.State().Phase, err)
			}
		})
	}
}
