package rollout_test

import (
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/rollout"
)

// FuzzPlanAndWindowParsing feeds one string to every parser of a rollout
// plan and a site (waves, selection, halt rule, percentages, windows,
// policies): none may panic, and what they accept must hold their own
// invariants.
func FuzzPlanAndWindowParsing(f *testing.F) {
	for _, s := range []string{"canary:1%,pilot:10%,all:100%", "product=demo-pump,hardware=a|b,sites=x|y,tags=t,version<1.1.0",
		"failure>=5% min=20", "95%", "Sun 02:00-05:00 America/Chicago", "Sat 23:00-02:00 Europe/Berlin", "auto-approve:critical,security",
		"a:100%,a:100%", "x:NaN%", "x:1e400%", "Mon 24:00-25:00 Mars/Olympus", "failure>=-1% min=99999999999999999999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if waves, err := rollout.ParseWaves(s); err == nil {
			prev := 0.0
			for _, w := range waves {
				if !(w.Share > prev) || w.Share > 1 {
					t.Fatalf("%q: shares not growing to 100%%: %+v", s, waves)
				}
				prev = w.Share
			}
			for b := 0; b < rollout.Buckets; b += 97 {
				if w := rollout.WaveOf(waves, b); w < 0 || w >= len(waves) {
					t.Fatalf("%q: bucket %d in wave %d", s, b, w)
				}
			}
		}
		if sel, err := rollout.ParseSelection(s); err == nil {
			sel.Matches(rollout.Device{ID: "d", Product: "demo-pump", Installed: "1.0.0"})
		}
		if h, err := rollout.ParseHaltRule(s); err == nil && (h.FailureRate < 0 || h.FailureRate > 1 || h.MinAttempts < 0) {
			t.Fatalf("%q: halt rule %+v", s, h)
		}
		if p, err := rollout.ParsePercent(s); err == nil && (p < 0 || p > 1 || p != p) {
			t.Fatalf("%q: percent %v", s, p)
		}
		if w, err := rollout.ParseWindow(s); err == nil {
			w.Contains(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC))
		}
		rollout.ParsePolicy(s)
	})
}
