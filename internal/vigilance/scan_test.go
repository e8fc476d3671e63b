package vigilance_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/feed"
	"github.com/vigil-ota/vigil/internal/vigilance/kev"
	"github.com/vigil-ota/vigil/internal/vigilance/nvd"
	"github.com/vigil-ota/vigil/internal/vigilance/osv"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
)

// feeds are the test data's feeds, parsed once.
type feeds struct {
	osv, nvd map[string]*vigilance.Record
	ix       *vigilance.Index
	kev      vigilance.KEVLookup
}

var (
	loadOnce sync.Once
	loaded   feeds
)

func load(t *testing.T) feeds {
	t.Helper()
	loadOnce.Do(func() {
		dir := vigilancetest.Dir(t)
		loaded = feeds{osv: map[string]*vigilance.Record{}, nvd: map[string]*vigilance.Record{}, ix: vigilance.NewIndex()}
		for f, err := range feed.Files(filepath.Join(dir, "osv", "go-all.zip")) {
			if err != nil {
				t.Fatal(err)
			}
			r, err := osv.Parse(f.Data)
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			loaded.osv[r.ID] = r
			loaded.ix.Add(r)
		}
		for f, err := range feed.Files(filepath.Join(dir, "nvd")) {
			if err != nil {
				t.Fatal(err)
			}
			rs, _, err := nvd.Parse(f.Data)
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			for _, r := range rs {
				loaded.nvd[r.ID] = r
				loaded.ix.Add(r)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "kev", "known_exploited_vulnerabilities.json"))
		if err != nil {
			t.Fatal(err)
		}
		cat, err := kev.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		loaded.kev = cat.Lookup()
	})
	if loaded.ix == nil {
		t.Fatal("feeds did not load")
	}
	return loaded
}

func readSBOM(t *testing.T, rel string) *sbom.SBOM {
	t.Helper()
	f, err := os.Open(filepath.Join(vigilancetest.Dir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := sbom.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The test data's expected-matches.json, exactly: the same ids,
// components and KEV flags, no more, no fewer, for every SBOM.
func TestScanReproducesTheExpectedMatchesExactly(t *testing.T) {
	fd := load(t)
	for _, exp := range vigilancetest.Load(t) {
		t.Run(filepath.Base(exp.SBOM)+"/"+strings.Fields(exp.Feed)[0], func(t *testing.T) {
			s := readSBOM(t, exp.SBOM)
			all := vigilance.Scan(s.Product+"@"+s.Version, s.Components, fd.ix, fd.kev)
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
		})
	}
}

func checkOSV(t *testing.T, exp vigilancetest.Expected, got []vigilance.Finding) {
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

func checkNVD(t *testing.T, exp vigilancetest.Expected, got []vigilance.Finding) {
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

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := vigilancetest.Sorted(got), vigilancetest.Sorted(want)
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
