package rollout_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/rollout"
)

func TestParsersNameWhatIsWrong(t *testing.T) {
	for in, want := range map[string]string{
		"canary:1%,all:50%":            "must reach 100%",
		"canary:10%,pilot:5%,all:100%": "must grow",
		"canary 1%":                    "NAME:PERCENT",
		"Canary:1%,all:100%":           "lower-case",
		"a:50%,a:100%":                 "named twice",
	} {
		if _, err := rollout.ParseWaves(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWaves(%q) = %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]string{"failure>=5%": "min=N", "failure>=five min=2": "percentage", "min=0 failure>=1%": "positive", "fails>=5%": "failure>="} {
		if _, err := rollout.ParseHaltRule(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseHaltRule(%q) = %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]string{"hardware=rev-b": "product=", "product=demo-pump,color=red": "color", "product=demo-pump,version<1.x": "semantic"} {
		if _, err := rollout.ParseSelection(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSelection(%q) = %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]string{"Sun 02:00-05:00": "DAY HH:MM", "Funday 02:00-05:00 UTC": "weekday", "Sun 2-5 UTC": "HH:MM", "Sun 02:00-05:00 Mars/Olympus": "time zone"} {
		if _, err := rollout.ParseWindow(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWindow(%q) = %v, want %q", in, err, want)
		}
	}
	if _, err := rollout.ParsePolicy("auto-approve: critical,urgent"); err == nil {
		t.Error("unknown severity in a policy accepted")
	}
}

func TestWindowsFollowTheSitesTimeZoneAcrossMidnightAndDST(t *testing.T) {
	w, err := rollout.ParseWindow("Sun 02:00-05:00 America/Chicago")
	if err != nil {
		t.Fatal(err)
	}
	chicago, _ := time.LoadLocation("America/Chicago")
	in := time.Date(2026, 11, 29, 3, 0, 0, 0, chicago)  // Sunday 03:00 CST
	out := time.Date(2026, 11, 29, 5, 0, 0, 0, chicago) // end is exclusive
	if !w.Contains(in) || w.Contains(out) || w.Contains(in.UTC().Add(24*time.Hour)) {
		t.Fatal("window membership wrong")
	}
	summer := time.Date(2026, 7, 5, 2, 30, 0, 0, chicago) // Sunday, CDT
	if !w.Contains(summer) {
		t.Fatal("window ignores daylight saving time")
	}
	night, _ := rollout.ParseWindow("Sat 23:00-02:00 Europe/Berlin")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, c := range []struct {
		t    time.Time
		want bool
	}{
		{time.Date(2026, 11, 28, 23, 30, 0, 0, berlin), true},  // Saturday night
		{time.Date(2026, 11, 29, 1, 59, 0, 0, berlin), true},   // Sunday early
		{time.Date(2026, 11, 29, 2, 0, 0, 0, berlin), false},   // over
		{time.Date(2026, 11, 27, 23, 30, 0, 0, berlin), false}, // Friday
	} {
		if got := night.Contains(c.t); got != c.want {
			t.Errorf("%s: %v, want %v", c.t, got, c.want)
		}
	}
}

func TestBucketIsStableAndSpreadsEvenly(t *testing.T) {
	if rollout.Bucket("ro-1", "PUMP-1") != rollout.Bucket("ro-1", "PUMP-1") {
		t.Fatal("bucket not deterministic")
	}
	if rollout.Bucket("ro-1", "PUMP-1") == rollout.Bucket("ro-2", "PUMP-1") && rollout.Bucket("ro-1", "PUMP-2") == rollout.Bucket("ro-2", "PUMP-2") {
		t.Fatal("bucket ignores the rollout id")
	}
}

// Found by FuzzPlanAndWindowParsing: "NAN%" parsed as a percentage, so a
// halt rule "failure>=NaN%" would never halt and a success threshold of NaN
// would never open the next wave.
func TestPercentagesRefuseNaNAndInfinity(t *testing.T) {
	for _, s := range []string{"NaN%", "NAN%", "nan%", "Inf%", "+Inf%", "-Inf%"} {
		if _, err := rollout.ParsePercent(s); err == nil {
			t.Errorf("ParsePercent(%q) accepted", s)
		}
		if _, err := rollout.ParseWaves("all:" + s); err == nil {
			t.Errorf("ParseWaves(all:%s) accepted", s)
		}
		if _, err := rollout.ParseHaltRule("failure>=" + s + " min=1"); err == nil {
			t.Errorf("ParseHaltRule accepted %s", s)
		}
	}
}
