package feed_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/kev"
	"github.com/vigil-ota/vigil/internal/vigilance/nvd"
	"github.com/vigil-ota/vigil/internal/vigilance/osv"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
)

// FuzzFeedRecords feeds arbitrary bytes to the OSV, NVD and KEV parsers
// and matches whatever parses against components: nothing may panic, and
// a parsed record holds within the limits.
func FuzzFeedRecords(f *testing.F) {
	dir := vigilancetest.Dir(f)
	for _, p := range []string{"nvd/CVE-2014-0160.json", "nvd/CVE-2022-48174.json"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"id":"GO-1","affected":[{"package":{"ecosystem":"Go","name":"m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.3+incompatible"}]}]}]}`))
	f.Add([]byte(`{"vulnerabilities":[{"cve":{"id":"CVE-1-1","configurations":[{"nodes":[{"cpeMatch":[{"vulnerable":true,"criteria":"cpe:2.3:a:a:b:*:*:*:*:*:*:*:*","versionEndExcluding":"1.0.1g"}]}]}]}}]}`))
	f.Add([]byte(`{"catalogVersion":"x","vulnerabilities":[{"cveID":"CVE-2014-0160","dateAdded":"2022-05-04"}]}`))
	comps := []vigilance.Component{
		{BOMRef: "a", Name: "m", Version: "v1.2.0", PURL: "pkg:golang/m@v1.2.0"},
		{BOMRef: "b", Name: "b", Version: "1.0.1f", CPE: "cpe:2.3:a:a:b:1.0.1f:*:*:*:*:*:*:*"},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var recs []*vigilance.Record
		if r, err := osv.Parse(b); err == nil {
			recs = append(recs, r)
		}
		if rs, _, err := nvd.Parse(b); err == nil {
			recs = append(recs, rs...)
		}
		kev.Parse(b)
		ix := vigilance.NewIndex()
		for _, r := range recs {
			if len(r.ID) > vigilance.MaxIDLength || len(r.Aliases) > vigilance.MaxIDs || len(r.Criteria) > vigilance.MaxCriteria {
				t.Fatalf("record over the limits: %s", r.ID)
			}
			ix.Add(r)
		}
		vigilance.Scan("p@1", comps, ix, nil)
	})
}
