package vigilance_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// The scale benchmark's catalog (docs/benchmarks.md): NVD-shaped records
// over a space of CPE (vendor, product) pairs, and releases whose
// components are drawn from the same space. VIGIL_BENCH_SMALL=1 divides
// everything by 100 for a quick run.
const (
	benchRecords    = 250_000
	benchReleases   = 10_000
	benchComponents = 200
	benchProducts   = 20_000 // (vendor, product) pairs
	benchDeviceLine = 100    // releases per device product line
)

func benchScale() (records, releases, pairs int) {
	if os.Getenv("VIGIL_BENCH_SMALL") != "" {
		return benchRecords / 100, benchReleases / 100, benchProducts / 100
	}
	return benchRecords, benchReleases, benchProducts
}

// BenchmarkImportOSVFirst imports the test data's OSV zip (4,291 Go
// records) into an empty store.
func BenchmarkImportOSVFirst(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		w := newBenchWorld(b)
		w.demoPumpB()
		b.StartTimer()
		w.mustImport(api.FeedOSV, filepath.Join(w.dir, "osv", "go-all.zip"))
	}
}

// BenchmarkImportOSVUnchanged imports the same zip again: every record is
// parsed and hashed, none is written.
func BenchmarkImportOSVUnchanged(b *testing.B) {
	w := newBenchWorld(b)
	w.mustImport(api.FeedOSV, filepath.Join(w.dir, "osv", "go-all.zip"))
	for b.Loop() {
		if rep := w.mustImport(api.FeedOSV, filepath.Join(w.dir, "osv", "go-all.zip")); rep.New+rep.Changed != 0 {
			b.Fatalf("%+v", rep)
		}
	}
}

// BenchmarkImportKEVFirst imports the KEV catalog (1,404 entries).
func BenchmarkImportKEVFirst(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		w := newBenchWorld(b)
		b.StartTimer()
		w.mustImport(api.FeedKEV, filepath.Join(w.dir, "kev", "known_exploited_vulnerabilities.json"))
	}
}

// benchWorld is a world for benchmarks (testing.B).
type benchWorld struct{ *world }

func newBenchWorld(b *testing.B) benchWorld {
	return benchWorld{newWorldOn(b, filepath.Join(b.TempDir(), "vigil.db"))}
}

func (w benchWorld) demoPumpB() {
	w.index("demo-pump", "1.0.0", filepath.Join(w.dir, "sbom", "demo-pump-1.0.0.cdx.json"))
}

func (w benchWorld) mustImport(kind, path string) api.ImportReport {
	rep, err := w.svc.ImportFeed(w.tb.Context(), kind, path)
	if err != nil {
		w.tb.Fatal(err)
	}
	return rep
}

// synthetic builds (or reuses, from a cache file in the temporary
// directory) the scale catalog and copies it for this benchmark.
func synthetic(b *testing.B) benchWorld {
	records, releases, pairs := benchScale()
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("vigil-bench-%d-%d-%d-%d.db", records, releases, benchComponents, pairs))
	if _, err := os.Stat(cache); err != nil {
		start := time.Now()
		w := newWorldOn(b, cache+".tmp")
		buildSynthetic(b, w, records, releases, pairs)
		w.st.Close()
		if err := os.Rename(cache+".tmp", cache); err != nil {
			b.Fatal(err)
		}
		b.Logf("built the synthetic catalog in %s: %s", time.Since(start).Round(time.Second), cache)
	}
	dst := filepath.Join(b.TempDir(), "vigil.db")
	copyFile(b, cache, dst)
	return benchWorld{newWorldOn(b, dst)}
}

func copyFile(b *testing.B, from, to string) {
	in, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
}

func pair(i int) (vendor, product string) {
	return "vendor" + strconv.Itoa(i%997), "product" + strconv.Itoa(i)
}

// nvdShaped is a synthetic NVD record: three criteria of one pair.
func nvdShaped(id string, p int) *vigilance.Record {
	v, pr := pair(p)
	cpe := "cpe:2.3:a:" + v + ":" + pr + ":*:*:*:*:*:*:*:*"
	return &vigilance.Record{Source: vigilance.SourceNVD, ID: id, Summary: "synthetic record",
		CVSS: []vigilance.CVSS{{Version: "3.1", BaseScore: 7.5, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", Type: "Primary"}},
		Criteria: []vigilance.Criterion{
			{Criteria: cpe, VersionStartIncluding: "1.0", VersionEndExcluding: "1.4"},
			{Criteria: cpe, VersionStartIncluding: "2.0", VersionEndExcluding: "2.1.7"},
			{Criteria: "cpe:2.3:a:" + v + ":" + pr + ":3.0.0:*:*:*:*:*:*:*"},
		}}
}

func buildSynthetic(b *testing.B, w *world, records, releases, pairs int) {
	ctx := b.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]state.VulnRecord, 0, 5000)
	for i := range records {
		r := nvdShaped(fmt.Sprintf("CVE-2090-%07d", i), rng.IntN(pairs))
		data, _ := json.Marshal(r)
		batch = append(batch, state.VulnRecord{Source: r.Source, ID: r.ID, Hash: strconv.Itoa(i), Data: data, Keys: keysOf(r), Imported: time.Now()})
		if len(batch) == cap(batch) || i == records-1 {
			if err := w.st.PutRecords(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for r := range releases {
		product, version := "line"+strconv.Itoa(r/benchDeviceLine), fmt.Sprintf("1.%d.0", r%benchDeviceLine)
		sb := state.SBOMRecord{Product: product, Version: version, Target: product + "/sbom", SHA256: fmt.Sprintf("%064d", r), SpecVersion: "1.5", Indexed: time.Now()}
		for c := range benchComponents {
			sb.Components = append(sb.Components, syntheticComponent(product, version, c, rng.IntN(pairs), rng))
		}
		if err := w.st.PutSBOM(ctx, sb); err != nil {
			b.Fatal(err)
		}
	}
}

func syntheticComponent(product, version string, c, p int, rng *rand.Rand) state.SBOMComponent {
	v, pr := pair(p)
	ver := fmt.Sprintf("%d.%d.%d", 1+rng.IntN(3), rng.IntN(5), rng.IntN(10))
	comp := vigilance.Component{BOMRef: "c" + strconv.Itoa(c), Name: pr, Version: ver, CPE: "cpe:2.3:a:" + v + ":" + pr + ":" + ver + ":*:*:*:*:*:*:*"}
	return state.SBOMComponent{Product: product, Version: version, BOMRef: comp.BOMRef, Name: comp.Name, CompVersion: ver, CPE: comp.CPE, Keys: componentKeysOf(comp)}
}

func keysOf(r *vigilance.Record) []state.IndexKey {
	_, products := r.Keys()
	out := make([]state.IndexKey, 0, len(products))
	for _, k := range products {
		out = append(out, state.IndexKey{Kind: "cpe", K1: k.Vendor, K2: k.Product})
	}
	return out
}

func componentKeysOf(c vigilance.Component) []state.IndexKey {
	k, _, ok := c.Product()
	if !ok {
		return nil
	}
	return []state.IndexKey{{Kind: "cpe", K1: k.Vendor, K2: k.Product}}
}

// BenchmarkMatchNewReleaseAtScale indexes one new release of 200
// components against the synthetic catalog (250,000 NVD-shaped records,
// 10,000 releases × 200 components): store its SBOM, match, store its
// findings.
func BenchmarkMatchNewReleaseAtScale(b *testing.B) {
	w := synthetic(b)
	_, _, pairs := benchScale()
	rng := rand.New(rand.NewPCG(3, 4))
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		version := fmt.Sprintf("9.%d.0", n)
		doc := &sbom.SBOM{SpecVersion: "1.5", Product: "newline", Version: version}
		for c := range benchComponents {
			sc := syntheticComponent("newline", version, c, rng.IntN(pairs), rng)
			doc.Components = append(doc.Components, vigilance.Component{BOMRef: sc.BOMRef, Name: sc.Name, Version: sc.CompVersion, CPE: sc.CPE})
		}
		p := release.Published{Product: "newline", Target: "newline/sbom-" + version, SHA256: fmt.Sprintf("%064d", n), Custom: &release.Custom{Product: "newline", Version: version, Kind: release.KindSBOM}}
		b.StartTimer()
		if _, err := w.svc.IndexSBOM(b.Context(), p, doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchNewRecordAtScale imports one new NVD record (as a feed
// file) into the synthetic catalog: parse, store, find the components of
// its (vendor, product) across every release, match them, store findings.
func BenchmarkMatchNewRecordAtScale(b *testing.B) {
	w := synthetic(b)
	_, _, pairs := benchScale()
	dir := b.TempDir()
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		v, pr := pair(n * 7 % pairs)
		rec := map[string]any{"id": fmt.Sprintf("CVE-2091-%07d", n), "vulnStatus": "Analyzed", "configurations": []any{map[string]any{"nodes": []any{
			map[string]any{"cpeMatch": []any{map[string]any{"vulnerable": true, "criteria": "cpe:2.3:a:" + v + ":" + pr + ":*:*:*:*:*:*:*:*", "versionEndExcluding": "2.2"}}}}}}}
		body, _ := json.Marshal(rec)
		path := filepath.Join(dir, "rec.json")
		os.WriteFile(path, body, 0o600)
		b.StartTimer()
		w.mustImport(api.FeedNVD, path)
	}
}
