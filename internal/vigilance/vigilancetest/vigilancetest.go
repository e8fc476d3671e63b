// Package vigilancetest loads the vigilance test data and its expected
// results (testdata/vigilance/README.md) for the tests of every layer that
// must reproduce them exactly: the matching core, the offline scan, the
// server on both backends.
//
// The data is ../shared/testdata/vigilance when it exists (the team's
// shared copy), $VIGIL_VIGILANCE_TESTDATA when set, and the copy in
// internal/vigilance/testdata otherwise.
package vigilancetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
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
