package vigilance_test

import (
	"path/filepath"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// Two copies of OpenSSL pair up in version order; a component that only
// one release has is added or removed; an unchanged one is not reported.
func TestSBOMDiffPairsTwoCopiesOfALibraryInVersionOrder(t *testing.T) {
	a := readSBOM(t, filepath.Join("sbom", "demo-pump-1.0.0.cdx.json"))
	b := readSBOM(t, filepath.Join("sbom", "demo-pump-1.1.0.cdx.json"))
	d := vigilance.DiffSBOMs(a.Components, b.Components)
	got := map[string]string{}
	for _, c := range d.Changed {
		got[c.Name+" "+c.From] = c.To
	}
	want := map[string]string{"openssl 1.0.1f": "1.0.1u", "openssl 1.1.1k": "1.1.1w", "zlib 1.2.11": "1.3.1", "curl 7.80.0": "8.5.0", "busybox 1.35.0": "1.37.0"}
	if len(got) != len(want) || len(d.Added) != 0 || len(d.Removed) != 0 {
		t.Fatalf("diff %+v", d)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s → %s, want %s", k, got[k], v)
		}
	}
	extra := append(append([]vigilance.Component{}, b.Components...), vigilance.Component{BOMRef: "x", Name: "lua", Version: "5.4.6", PURL: "pkg:generic/lua@5.4.6"})
	d = vigilance.DiffSBOMs(a.Components, extra[1:])
	if len(d.Added) != 1 || d.Added[0].Name != "lua" || len(d.Removed) != 1 {
		t.Fatalf("added/removed %+v", d)
	}
}
