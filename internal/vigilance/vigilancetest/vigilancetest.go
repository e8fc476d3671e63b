// Package vigilancetest loads the vigilance test data and its expected
// results (testdata/vigilance/README.md) for the tests of every layer that
// must reproduce them exactly: the matching core, the offline scan, the
// server on both backends.
//
// The data is $VIGIL_VIGILANCE_TESTDATA when set, else
// ../shared/testdata/vigilance when it exists (the team's shared copy),
// else the copy in internal/vigilance/testdata. The tests read the SBOMs
// and feeds that expected-matches.json names, so other data checks them
// just as well.
package vigilancetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// Env overrides the test data directory.
const Env = "VIGIL_VIGILANCE_TESTDATA"

// Dir returns the test data directory.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(Env); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if shared := filepath.Join(repo, "..", "shared", "testdata", "vigilance"); exists(filepath.Join(shared, "expected-matches.json")) {
		return shared
	}
	return filepath.Join(repo, "internal", "vigilance", "testdata")
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Expected is one entry of expected-matches.json.
type Expected struct {
	SBOM           string   `json:"sbom"`
	Feed           string   `json:"feed"`
	OSVIDs         []string `json:"osv_ids"`
	CVEIDs         []string `json:"cve_ids"`
	KEVCVEIDs      []string `json:"kev_cve_ids"`
	KEVViaRelated  []string `json:"kev_cve_ids_via_related"`
	WithdrawnInRng []string `json:"withdrawn_osv_ids_in_range"`
	Matches        []struct {
		ID        string   `json:"id"`
		CVEID     string   `json:"cve_id"`
		Aliases   []string `json:"aliases"`
		CVEIDs    []string `json:"cve_ids"`
		InKEV     bool     `json:"in_kev"`
		Purls     []string `json:"component_purls"`
		KEVViaRel []string `json:"kev_via_related"`
		Component *struct {
			BOMRef  string `json:"bom-ref"`
			Name    string `json:"name"`
			Version string `json:"version"`
			CPE     string `json:"cpe"`
			PURL    string `json:"purl"`
		} `json:"component"`
	} `json:"matches"`
}

// IsOSV reports whether the entry is matched against the OSV feed.
func (e Expected) IsOSV() bool {
	return filepath.Base(filepath.Dir(e.Feed)) == "osv" || len(e.Feed) >= 3 && e.Feed[:3] == "osv"
}

// Load reads expected-matches.json.
func Load(t testing.TB) []Expected {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), "expected-matches.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Expected []Expected `json:"expected"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Expected
}

// Sorted returns a sorted copy.
func Sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// Check compares findings (of one SBOM, from any source) with an entry
// of expected-matches.json, exactly: the findings of the entry's source
// must be the expected ids, components and KEV flags, no more, no fewer.
func Check(t testing.TB, exp Expected, all []vigilance.Finding) {
	t.Helper()
	var got []vigilance.Finding
	for _, f := range all {
		if (f.Source == vigilance.SourceOSV) == exp.IsOSV() {
			got = append(got, f)
		}
	}
	if exp.IsOSV() {
		checkOSV(t, exp, got)
	} else {
		checkNVD(t, exp, got)
	}
}

func checkOSV(t testing.TB, exp Expected, got []vigilance.Finding) {
	byID := map[string][]vigilance.Finding{}
	var ids, cves, kevs, related []string
	for _, f := range got {
		if len(byID[f.VulnerabilityID]) == 0 {
			ids = append(ids, f.VulnerabilityID)
			cves = append(cves, f.CVEs...)
			if f.KEV {
				kevs = append(kevs, f.CVEs...)
			}
			related = append(related, f.KEVRelated...)
		}
		byID[f.VulnerabilityID] = append(byID[f.VulnerabilityID], f)
	}
	eq(t, "osv ids", ids, exp.OSVIDs)
	eq(t, "cve ids", cves, exp.CVEIDs)
	eq(t, "kev cve ids", kevs, exp.KEVCVEIDs)
	eq(t, "kev ids via related", related, exp.KEVViaRelated)
	for _, m := range exp.Matches {
		var purls []string
		for _, f := range byID[m.ID] {
			purls = append(purls, f.Component.PURL)
			eq(t, m.ID+" aliases", f.Aliases, m.Aliases)
			eq(t, m.ID+" kev via related", f.KEVRelated, m.KEVViaRel)
			if f.KEV != m.InKEV {
				t.Errorf("%s: kev %v, want %v", m.ID, f.KEV, m.InKEV)
			}
		}
		eq(t, m.ID+" components", purls, m.Purls)
	}
	for _, w := range exp.WithdrawnInRng {
		if len(byID[w]) > 0 {
			t.Errorf("withdrawn %s was reported", w)
		}
	}
}

func checkNVD(t testing.TB, exp Expected, got []vigilance.Finding) {
	var cves, kevs []string
	byCVE := map[string]vigilance.Finding{}
	for _, f := range got {
		cves = append(cves, f.VulnerabilityID)
		if f.KEV {
			kevs = append(kevs, f.VulnerabilityID)
		}
		byCVE[f.VulnerabilityID] = f
	}
	eq(t, "cve ids", cves, exp.CVEIDs)
	eq(t, "kev cve ids", kevs, exp.KEVCVEIDs)
	for _, m := range exp.Matches {
		f, ok := byCVE[m.CVEID]
		if !ok {
			continue
		}
		c := m.Component
		if f.Component.BOMRef != c.BOMRef || f.Component.Name != c.Name || f.Component.Version != c.Version || f.Component.CPE != c.CPE || f.Component.PURL != c.PURL {
			t.Errorf("%s: component %+v, want %+v", m.CVEID, f.Component, *c)
		}
		if f.KEV != m.InKEV {
			t.Errorf("%s: kev %v, want %v", m.CVEID, f.KEV, m.InKEV)
		}
	}
}

func eq(t testing.TB, what string, got, want []string) {
	t.Helper()
	g, w := Sorted(got), Sorted(want)
	if !slices.Equal(g, w) {
		missing, extra := diff(w, g), diff(g, w)
		t.Errorf("%s: %d, want %d; missing %v, extra %v", what, len(g), len(w), missing, extra)
	}
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
