package release_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/internal/release"
)

func valid() release.Custom {
	return release.Custom{Product: "demo-pump", Version: "1.2.0", Hardware: []string{"rev-b", "rev-c"}, Kind: "full", Severity: "security", Cycle: "regular"}
}

func TestValidReleaseFieldsPass(t *testing.T) {
	c := valid()
	if err := c.Validate("demo-pump"); err != nil {
		t.Fatal(err)
	}
}

func TestEachBadFieldIsNamed(t *testing.T) {
	cases := map[string]func(*release.Custom){
		"custom.product":          func(c *release.Custom) { c.Product = "other" },
		"custom.version":          func(c *release.Custom) { c.Version = "1.2" },
		"custom.hardware":         func(c *release.Custom) { c.Hardware = nil },
		"custom.min_from_version": func(c *release.Custom) { c.MinFromVersion = "1.3.0" },
		"custom.kind":             func(c *release.Custom) { c.Kind = "patch" },
		"custom.delta_base":       func(c *release.Custom) { c.Kind = "delta" },
		"custom.severity":         func(c *release.Custom) { c.Severity = "high" },
		"custom.cycle":            func(c *release.Custom) { c.Cycle = "monthly" },
		"custom.downgrade_from":   func(c *release.Custom) { c.DowngradeFrom = []string{"1.0.0"} },
		"custom.sbom":             func(c *release.Custom) { c.SBOM = "other/x.json" },
		"custom.result_sha256":    func(c *release.Custom) { c.Kind, c.DeltaBaseSHA256 = "delta", strings.Repeat("a", 64) },
		"custom.result_length": func(c *release.Custom) {
			c.Kind, c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = "delta", strings.Repeat("a", 64), strings.Repeat("b", 64), 1<<62
		},
		"is the result itself": func(c *release.Custom) {
			c.Kind, c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = "delta", strings.Repeat("a", 64), strings.Repeat("a", 64), 10
		},
		"only for kind": func(c *release.Custom) { c.ResultLength = 10 },
	}
	for want, mutate := range cases {
		c := valid()
		mutate(&c)
		if err := c.Validate("demo-pump"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestUnknownCustomFieldsAreRefused(t *testing.T) {
	raw := json.RawMessage(`{"product":"demo-pump","version":"1.0.0","hardware":["a"],"kind":"full","severity":"routine","cycle":"regular","hardwre":["b"]}`)
	if _, err := release.Parse(&raw, "demo-pump"); err == nil || !strings.Contains(err.Error(), "hardwre") {
		t.Fatalf("got %v", err)
	}
}

func TestDeviceChecks(t *testing.T) {
	c := valid()
	c.MinFromVersion = "1.0.0"
	dev := release.Device{Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.1.0"}
	if r := c.Check(dev); r != nil {
		t.Fatalf("installable release refused: %v", r)
	}
	for check, d := range map[string]release.Device{
		"product":          {Product: "infusion", Hardware: "rev-b", InstalledVersion: "1.1.0"},
		"hardware":         {Product: "demo-pump", Hardware: "rev-a", InstalledVersion: "1.1.0"},
		"downgrade":        {Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.3.0"},
		"not-newer":        {Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.2.0"},
		"min-from-version": {Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "0.9.0"},
	} {
		if r := c.Check(d); r == nil || r.Check != check {
			t.Errorf("%s: got %v", check, r)
		}
	}
	recall := valid()
	recall.DowngradeFrom = []string{"1.3.0"}
	if r := recall.Check(release.Device{Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.3.0"}); r != nil {
		t.Fatalf("signed recall refused: %v", r)
	}
	if r := recall.Check(release.Device{Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.4.0"}); r == nil || r.Check != "downgrade" {
		t.Fatalf("recall applied to a version it does not name: %v", r)
	}
}

func TestSemverPrecedence(t *testing.T) {
	for _, c := range [][2]string{{"1.0.0-rc.1", "1.0.0"}, {"1.9.0", "1.10.0"}, {"1.0.0", "2.0.0"}} {
		if release.Compare(c[0], c[1]) >= 0 {
			t.Errorf("%s should sort before %s", c[0], c[1])
		}
	}
	for _, bad := range []string{"v1.0.0", "1.0", "1", "", "1.0.0.0"} {
		if release.ValidateVersion(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Structure issue, point 0: a delta target signed by other tooling was
// accepted by Check and would have been written to a slot as if it were
// the full image.
func TestCheckRefusesKindsTheAgentDoesNotInstall(t *testing.T) {
	dev := release.Device{Product: "demo-pump", Hardware: "rev-b", InstalledVersion: "1.0.0"}
	c := valid()
	c.Kind, c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = release.KindDelta, strings.Repeat("a", 64), strings.Repeat("b", 64), 10
	if err := c.Validate("demo-pump"); err != nil {
		t.Fatal(err)
	}
	if r := c.Check(dev); r == nil || r.Check != release.CheckKind {
		t.Fatalf("a delta target passed Check: %v", r)
	}
	full := valid()
	if r := full.Check(dev); r != nil {
		t.Fatalf("a full image was refused: %v", r)
	}
}
