package vigilance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance/feed"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob/localblob"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

// world is a vigilance service on a real store and an (empty) real
// repository, with a clock the test moves and the alerts it raised.
type world struct {
	tb  testing.TB
	st  state.Store
	svc *vigilance.Service
	dir string // test data

	mu     sync.Mutex
	now    time.Time
	alerts []vigilance.Alert
}

func (w *world) Alert(_ context.Context, a vigilance.Alert) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.alerts = append(w.alerts, a)
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

func newWorldOn(t testing.TB, dsn string) *world {
	st, err := sqlstore.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := localblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{tb: t, st: st, dir: vigilancetest.Dir(t), now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	repo := tufrepo.New(st, blobs, tufrepo.Options{})
	w.svc = vigilance.New(vigilance.Stores{Vulns: st, SBOMs: st, Findings: st, Registry: st, Audit: st}, repo,
		vigilance.Options{Now: w.clock, Alerts: w, TempDir: t.TempDir()})
	return w
}

func newWorld(t *testing.T) *world { return newWorldOn(t, filepath.Join(t.TempDir(), "vigil.db")) }

// index indexes an SBOM file of the test data as release product@version.
func (w *world) index(product, version, file string) {
	w.tb.Helper()
	f, err := os.Open(file)
	if err != nil {
		w.tb.Fatal(err)
	}
	defer f.Close()
	doc, err := sbom.Parse(f)
	if err != nil {
		w.tb.Fatal(err)
	}
	p := release.Published{Product: product, Target: product + "/" + product + "-" + version + ".cdx.json", SHA256: strings.Repeat("a", 64),
		Custom: &release.Custom{Product: product, Version: version, Kind: release.KindSBOM}}
	if _, err := w.svc.IndexSBOM(w.tb.Context(), p, doc); err != nil {
		w.tb.Fatal(err)
	}
}

func (w *world) demoPump(version string) {
	w.index("demo-pump", version, filepath.Join(w.dir, "sbom", "demo-pump-"+version+".cdx.json"))
}

func (w *world) importFeed(kind, path string) api.ImportReport {
	w.tb.Helper()
	rep, err := w.svc.ImportFeed(w.tb.Context(), kind, path)
	if err != nil {
		w.tb.Fatal(err)
	}
	return rep
}

func (w *world) devices(site, version string, ids ...string) {
	w.tb.Helper()
	ctx := w.tb.Context()
	if err := w.st.PutSite(ctx, state.Site{Name: site, TimeZone: "UTC"}); err != nil {
		w.tb.Fatal(err)
	}
	var ds []state.Device
	for _, id := range ids {
		ds = append(ds, state.Device{ID: id, Product: "demo-pump", Hardware: "rev-b", Site: site, PublicKey: "AAAA", Installed: version})
	}
	if err := w.st.AddDevices(ctx, ds); err != nil {
		w.tb.Fatal(err)
	}
}

func (w *world) install(version string, ids ...string) {
	w.tb.Helper()
	var ts []state.Touch
	for _, id := range ids {
		ts = append(ts, state.Touch{DeviceID: id, Installed: version, Seen: time.Now(), SignedAt: time.Now()})
	}
	if err := w.st.TouchDevices(w.tb.Context(), ts); err != nil {
		w.tb.Fatal(err)
	}
}

func (w *world) findings(f vigilance.Filter) []api.FindingDetail {
	w.tb.Helper()
	l, err := w.svc.Findings(w.tb.Context(), f)
	if err != nil {
		w.tb.Fatal(err)
	}
	return l.Findings
}

func (w *world) finding(vuln string) api.FindingDetail {
	w.tb.Helper()
	for _, f := range w.findings(vigilance.Filter{}) {
		if f.VulnerabilityID == vuln {
			return f
		}
	}
	w.tb.Fatalf("no finding of %s", vuln)
	return api.FindingDetail{}
}

// writeJSON writes v (or raw bytes) to dir/name.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// nvdRecord returns a test-data NVD record as a map, to edit.
func (w *world) nvdRecord(cve string) map[string]any {
	w.tb.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "nvd", cve+".json"))
	if err != nil {
		w.tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		w.tb.Fatal(err)
	}
	return m
}

func auditActions(t *testing.T, st state.Store) string {
	t.Helper()
	es, err := st.AuditEntries(t.Context(), 0, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Action + " " + e.Subject + " " + string(e.Details) + "\n")
	}
	return b.String()
}

func TestImportsAreIncrementalAndAMalformedRecordIsSkippedByFileAndID(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	dir := t.TempDir()
	for _, cve := range []string{"CVE-2022-37434", "CVE-2023-38545"} {
		writeJSON(t, dir, cve+".json", w.nvdRecord(cve))
	}
	writeJSON(t, dir, "broken.json", []byte(`{"id": "CVE-2099-0001", "configurations": [`))
	bad := w.nvdRecord("CVE-2022-48174")
	bad["configurations"] = []any{map[string]any{"nodes": []any{map[string]any{"cpeMatch": []any{map[string]any{"vulnerable": true, "criteria": "not a cpe"}}}}}}
	writeJSON(t, dir, "bad-cpe.json", bad)
	rep := w.importFeed(api.FeedNVD, dir)
	if rep.Records != 2 || rep.New != 2 || rep.FindingsOpened != 2 || len(rep.Skipped) != 2 {
		t.Fatalf("first import: %+v", rep)
	}
	skipped := map[string]string{}
	for _, s := range rep.Skipped {
		skipped[s.File] = s.ID
	}
	if id, ok := skipped["broken.json"]; !ok || id != "" {
		t.Errorf("broken JSON not reported by file: %+v", rep.Skipped)
	}
	if skipped["bad-cpe.json"] != "CVE-2022-48174" {
		t.Errorf("bad criteria not reported by file and id: %+v", rep.Skipped)
	}
	if _, err := w.st.Finding(t.Context(), "x"); !apperr.Is(err, apperr.NotFound) {
		t.Fatal(err)
	}
	again := w.importFeed(api.FeedNVD, dir)
	if again.New+again.Changed != 0 || again.Unchanged != 2 || again.FindingsOpened+again.FindingsClosed != 0 {
		t.Fatalf("unchanged re-import: %+v", again)
	}
	if _, err := w.svc.ImportFeed(t.Context(), api.FeedNVD, t.TempDir()); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("an empty feed: %v", err)
	}
	if _, err := w.svc.ImportFeed(t.Context(), "ghsa", dir); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("an unknown kind: %v", err)
	}
}

func TestRejectedNVDAndWithdrawnOSVRecordsCloseWhatTheyOpened(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	if n := len(w.findings(vigilance.Filter{Status: "open"})); n != 5 {
		t.Fatalf("%d open findings", n)
	}
	rec := w.nvdRecord("CVE-2022-48174")
	rec["vulnStatus"] = "Rejected"
	rep := w.importFeed(api.FeedNVD, writeJSON(t, t.TempDir(), "CVE-2022-48174.json", rec))
	if rep.Changed != 1 || rep.Withdrawn != 1 || rep.FindingsClosed != 1 {
		t.Fatalf("rejected record: %+v", rep)
	}
	f := w.findings(vigilance.Filter{Status: "closed"})
	if len(f) != 1 || f[0].VulnerabilityID != "CVE-2022-48174" || f[0].ClosedReason != vigilance.ClosedRejected {
		t.Fatalf("closed: %+v", f)
	}

	// OSV: a record that matches proton-bridge, then withdrawn.
	w.index("proton-bridge", "1.6.3", filepath.Join(w.dir, "sbom", "proton-bridge-v1.6.3.cdx.json"))
	osvRec := map[string]any{"schema_version": "1.3.1", "id": "GO-TEST-0001", "modified": "2026-01-01T00:00:00Z", "aliases": []string{"CVE-2099-0001"},
		"affected": []any{map[string]any{"package": map[string]any{"ecosystem": "Go", "name": "golang.org/x/net"},
			"ranges": []any{map[string]any{"type": "SEMVER", "events": []any{map[string]any{"introduced": "0"}, map[string]any{"fixed": "99.0.0"}}}}}}}
	d := t.TempDir()
	if rep := w.importFeed(api.FeedOSV, writeJSON(t, d, "GO-TEST-0001.json", osvRec)); rep.FindingsOpened != 1 {
		t.Fatalf("OSV record: %+v", rep)
	}
	osvRec["withdrawn"] = "2026-02-01T00:00:00Z"
	if rep := w.importFeed(api.FeedOSV, writeJSON(t, d, "GO-TEST-0001.json", osvRec)); rep.FindingsClosed != 1 {
		t.Fatalf("withdrawn OSV record: %+v", rep)
	}
	for _, f := range w.findings(vigilance.Filter{Status: "closed"}) {
		if f.VulnerabilityID == "GO-TEST-0001" && f.ClosedReason != vigilance.ClosedWithdrawn {
			t.Fatalf("withdrawn closes with %q", f.ClosedReason)
		}
	}
}

func TestARecordWhoseRangeNoLongerCoversTheComponentClosesItsFinding(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	rec := w.nvdRecord("CVE-2022-37434")
	b, _ := json.Marshal(rec)
	// zlib 1.2.11 is in "≤ 1.2.12"; move the end below it.
	b = []byte(strings.ReplaceAll(string(b), `"versionEndIncluding":"1.2.12"`, `"versionEndIncluding":"1.2.10"`))
	rep := w.importFeed(api.FeedNVD, writeJSON(t, t.TempDir(), "CVE-2022-37434.json", b))
	if rep.Changed != 1 || rep.FindingsClosed != 1 {
		t.Fatalf("narrowed record: %+v", rep)
	}
	closed := w.findings(vigilance.Filter{Status: "closed"})
	if len(closed) != 1 || closed[0].ClosedReason != vigilance.ClosedNoMatch {
		t.Fatalf("closed %+v", closed)
	}
	// Back as it was: the same finding opens again, keeping its id.
	rep = w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd", "CVE-2022-37434.json"))
	if rep.FindingsOpened != 1 || w.finding("CVE-2022-37434").ID != closed[0].ID || w.finding("CVE-2022-37434").Status != "open" {
		t.Fatalf("reopened: %+v", rep)
	}
}

func TestKEVListingFollowsTheCatalogAndAKEVIDOnlyInRelatedIsNotKEV(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	if w.finding("CVE-2014-0160").KEV {
		t.Fatal("KEV before the catalog")
	}
	rep := w.importFeed(api.FeedKEV, filepath.Join(w.dir, "kev", "known_exploited_vulnerabilities.json"))
	if rep.New == 0 || rep.KEVVersion == "" {
		t.Fatalf("KEV import %+v", rep)
	}
	f := w.finding("CVE-2014-0160")
	if !f.KEV || f.KEVEntry == nil || f.KEVEntry.DateAdded != "2022-05-04" {
		t.Fatalf("Heartbleed after the catalog: %+v", f.KEVEntry)
	}
	if again := w.importFeed(api.FeedKEV, filepath.Join(w.dir, "kev", "known_exploited_vulnerabilities.json")); again.Unchanged != rep.New || again.New != 0 {
		t.Fatalf("KEV re-import %+v", again)
	}
	w.index("proton-bridge", "1.6.3", filepath.Join(w.dir, "sbom", "proton-bridge-v1.6.3.cdx.json"))
	// The OSV records naming CVE-2023-44487 (KEV-listed), some only as a
	// related id (the whole zip is imported in the end-to-end tests).
	osvDir := t.TempDir()
	for f, err := range feed.Files(filepath.Join(w.dir, "osv", "go-all.zip")) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(f.Data, []byte("CVE-2023-44487")) {
			writeJSON(t, osvDir, filepath.Base(f.Name), f.Data)
		}
	}
	w.importFeed(api.FeedOSV, osvDir)
	related := 0
	for _, f := range w.findings(vigilance.Filter{Release: "proton-bridge@1.6.3"}) {
		if len(f.KEVRelated) > 0 {
			related++
			if f.KEV {
				t.Errorf("%s is KEV only through related ids %v, but is flagged KEV", f.VulnerabilityID, f.KEVRelated)
			}
		}
	}
	if related == 0 {
		t.Fatal("no finding shows its KEV-listed related id")
	}
	if l, _ := w.svc.Findings(t.Context(), vigilance.Filter{KEV: true}); len(l.Findings) != 1 {
		t.Fatalf("--kev lists %d findings", len(l.Findings))
	}
}

func TestAlertsAreRaisedOnlyForReleasesDevicesRun(t *testing.T) {
	w := newWorld(t)
	w.devices("north", "1.0.0", "P1", "P2")
	w.demoPump("1.0.0")
	w.demoPump("1.1.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	if len(w.alerts) != 5 {
		t.Fatalf("%d alerts, want one per finding of 1.0.0", len(w.alerts))
	}
	a := w.alerts[0]
	if a.Event != "finding.new" || a.Devices != 2 || len(a.Sites) != 1 || a.Sites[0].Site != "north" || a.Finding.Release != "demo-pump@1.0.0" {
		t.Fatalf("alert %+v", a)
	}
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	if len(w.alerts) != 5 {
		t.Fatal("an unchanged import alerted again")
	}
}
