package vigilance_test

import (
	"os"
	"path/filepath"
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
			vigilancetest.Check(t, exp, vigilance.Scan(s.Product+"@"+s.Version, s.Components, fd.ix, fd.kev))
		})
	}
}
