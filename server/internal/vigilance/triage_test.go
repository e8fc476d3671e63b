package vigilance_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	openvex "github.com/openvex/go-vex/pkg/vex"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
	"github.com/vigil-ota/vigil/test/testsvc"
)

func TestTriageIsValidatedAndEveryChangeIsAudited(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	id := w.finding("CVE-2022-48174").ID
	ctx := audit.WithActor(t.Context(), "token:t1:security-officer")
	for name, in := range map[string]api.Triage{
		"unknown risk":                 {Risk: "medium", Rationale: "x"},
		"no rationale":                 {Risk: "controlled"},
		"not_affected, no why":         {Risk: "controlled", Rationale: "x", VEXStatus: api.VEXNotAffected},
		"not_affected, bad why":        {Risk: "controlled", Rationale: "x", VEXStatus: api.VEXNotAffected, Justification: "trust me"},
		"justification without status": {Risk: "controlled", Rationale: "x", Justification: "component_not_present"},
		"affected, no action":          {Risk: "uncontrolled", Rationale: "x", VEXStatus: api.VEXAffected},
		"unknown VEX status":           {Risk: "controlled", Rationale: "x", VEXStatus: "exploitable"},
		"uncontrolled but unaffected":  {Risk: "uncontrolled", Rationale: "x", VEXStatus: api.VEXNotAffected, Justification: "component_not_present"},
		"aware in the future":          {Risk: "controlled", Rationale: "x", Aware: time.Now().Add(48 * time.Hour), AwareReason: "typo"},
		"aware without a reason":       {Risk: "controlled", Rationale: "x", Aware: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		"notice before awareness":      {Risk: "controlled", Rationale: "x", Notified: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		"rationale too long":           {Risk: "controlled", Rationale: strings.Repeat("x", vigilance.MaxRationaleLength+1)},
		"rationale not UTF-8":          {Risk: "controlled", Rationale: "\xff\xfe"},
	} {
		if _, err := w.svc.Triage(ctx, id, in); !apperr.Is(err, apperr.Invalid) && !apperr.Is(err, apperr.TooLarge) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := w.svc.Triage(ctx, "F-nope", api.Triage{Risk: "controlled", Rationale: "x"}); !apperr.Is(err, apperr.NotFound) {
		t.Errorf("unknown finding: %v", err)
	}
	d, err := w.svc.Triage(ctx, id, api.Triage{Risk: "controlled", Rationale: "the ash shell is not reachable", VEXStatus: api.VEXNotAffected,
		Justification: "vulnerable_code_not_in_execute_path"})
	if err != nil || d.Risk != "controlled" || d.Triage.By != "token:t1:security-officer" || d.Clocks != nil {
		t.Fatalf("triage: %+v %v", d, err)
	}
	aware := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	if _, err := w.svc.Triage(ctx, id, api.Triage{Risk: "uncontrolled", Rationale: "reachable after all", Aware: aware, AwareReason: "the vendor told us on the 20th"}); err != nil {
		t.Fatal(err)
	}
	log := auditActions(t, w.st)
	if strings.Count(log, "finding.triage "+id) != 2 || !strings.Contains(log, `"before":{"risk":"controlled"`) || !strings.Contains(log, "the vendor told us on the 20th") {
		t.Fatalf("audit log:\n%s", log)
	}
}

func testClocks(t *testing.T, w *world) {
	w.devices("north", "1.0.0", "P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09", "P10")
	w.devices("south", "1.0.0", "P11", "P12", "P13", "P14", "P15", "P16", "P17", "P18", "P19", "P20")
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	hb := w.finding("CVE-2014-0160")
	if !hb.Aware.Equal(w.clock()) {
		t.Fatalf("awareness %s is not the import's time %s", hb.Aware, w.clock())
	}
	ctx := t.Context()
	if _, err := w.svc.Triage(ctx, hb.ID, api.Triage{Risk: "uncontrolled", Rationale: "reachable"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	vigilance.NewMetrics(reg, w.st, w.clock)
	overdue := func() []string {
		l, err := w.svc.Overdue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Findings) == 0 {
			return nil
		}
		return l.Findings[0].Clocks.Overdue
	}
	if o := overdue(); o != nil {
		t.Fatalf("overdue at once: %v", o)
	}
	w.advance(31 * 24 * time.Hour)
	if o := overdue(); !slices.Equal(o, []string{"notice"}) {
		t.Fatalf("after 31 days: %v", o)
	}
	if _, err := w.svc.Triage(ctx, hb.ID, api.Triage{Risk: "uncontrolled", Rationale: "reachable", Notified: w.clock().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w.advance(30 * 24 * time.Hour)
	if o := overdue(); !slices.Equal(o, []string{"fix"}) {
		t.Fatalf("after 61 days, customers told: %v", o)
	}
	if n := testutil.ToFloat64(metric(t, reg, "vigil_findings_overdue")); n != 1 {
		t.Fatalf("vigil_findings_overdue %v", n)
	}

	// 1.1.0 fixes it; 18 of 20 devices (90%) are not enough, 19 (95%) are.
	w.demoPump("1.1.0")
	w.install("1.1.0", "P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09", "P10", "P11", "P12", "P13", "P14", "P15", "P16", "P17", "P18")
	w.svc.EvaluateClocks(ctx)
	if d := w.finding("CVE-2014-0160"); d.Clocks.FixDeployed.IsZero() == false || d.Clocks.Remediated != 18 || d.Clocks.Exposed != 2 {
		t.Fatalf("at 90%%: %+v", d.Clocks)
	}
	w.install("1.1.0", "P19")
	w.svc.EvaluateClocks(ctx)
	d := w.finding("CVE-2014-0160")
	if d.Clocks.FixDeployed.IsZero() || len(d.Clocks.Overdue) != 0 || d.FixingRelease.Release != "demo-pump@1.1.0" || d.FixingRelease.Committed != 19 {
		t.Fatalf("at 95%%: clocks %+v, fixing %+v", d.Clocks, d.FixingRelease)
	}
	// Late, but deployed: the fix clock no longer runs, so it is not
	// overdue any more.
	if o := overdue(); o != nil {
		t.Fatalf("overdue after the fix deployed: %v", o)
	}
	if !strings.Contains(auditActions(t, w.st), "finding.fix_deployed "+hb.ID) {
		t.Fatal("the fix deployed is not audited")
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "x", nil, nil), prometheus.GaugeValue, mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (c collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c(ch) }

func TestUncontrolledClocksRunFromAwarenessAndStopWhenTheFixIsDeployedOnSQLite(t *testing.T) {
	testClocks(t, newWorld(t))
}

func TestUncontrolledClocksRunFromAwarenessAndStopWhenTheFixIsDeployedOnPostgres(t *testing.T) {
	testClocks(t, newWorldOn(t, testsvc.PostgresDSN(t)))
}

func TestExposureCountsDevicesPerSiteAndNamesReleasesWithoutAnSBOM(t *testing.T) {
	w := newWorld(t)
	w.devices("north", "1.0.0", "P1", "P2", "P3")
	w.devices("south", "1.0.0", "P4")
	w.install("0.9.0", "P3")
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	e, err := w.svc.Exposure(t.Context(), "CVE-2022-0778")
	if err != nil {
		t.Fatal(err)
	}
	if e.Total != 3 || len(e.Rows) != 2 || !slices.Equal(e.ReleasesWithoutSBOM, []string{"demo-pump@0.9.0"}) || e.Fixing["demo-pump"] != "" {
		t.Fatalf("exposure %+v", e)
	}
	if _, err := w.svc.Exposure(t.Context(), "CVE-1999-0001"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("unknown CVE: %v", err)
	}
	if _, err := w.svc.Exposure(t.Context(), strings.Repeat("A", 200)); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("huge id: %v", err)
	}
}

func TestTheKEVGateRefusesUnacceptedKnownExploitedVulnerabilities(t *testing.T) {
	w := newWorld(t)
	w.importFeed(api.FeedKEV, filepath.Join(w.dir, "kev", "known_exploited_vulnerabilities.json"))
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	doc := parseSBOM(t, filepath.Join(w.dir, "sbom", "demo-pump-1.0.0.cdx.json"))
	ctx := t.Context()
	err := w.svc.CheckNewRelease(ctx, "demo-pump", "1.0.0", doc, nil)
	if !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "CVE-2014-0160 in openssl 1.0.1f") {
		t.Fatalf("unaccepted: %v", err)
	}
	if err := w.svc.CheckNewRelease(ctx, "demo-pump", "1.0.0", doc, []api.AcceptedVulnerability{{ID: "CVE-2014-0160", Reason: "r"}, {ID: "CVE-2023-38545", Reason: "r"}}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("accepting a vulnerability that is not KEV-listed: %v", err)
	}
	if err := w.svc.CheckNewRelease(ctx, "demo-pump", "1.0.0", doc, []api.AcceptedVulnerability{{ID: "CVE-2014-0160", Reason: "r"}}); err != nil {
		t.Fatalf("accepted: %v", err)
	}
	if err := w.svc.CheckNewRelease(ctx, "demo-pump", "1.1.0", parseSBOM(t, filepath.Join(w.dir, "sbom", "demo-pump-1.1.0.cdx.json")), nil); err != nil {
		t.Fatalf("a clean release: %v", err)
	}
}

func parseSBOM(t *testing.T, path string) *sbom.SBOM {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := sbom.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestVEXRoundTripsThroughCycloneDXAndOpenVEX(t *testing.T) {
	w := newWorld(t)
	w.demoPump("1.0.0")
	w.importFeed(api.FeedNVD, filepath.Join(w.dir, "nvd"))
	ctx := t.Context()
	triage := map[string]api.Triage{
		"CVE-2014-0160":  {Risk: "uncontrolled", Rationale: "reachable", VEXStatus: api.VEXAffected, Action: "update to 1.1.0"},
		"CVE-2022-48174": {Risk: "controlled", Rationale: "no shell", VEXStatus: api.VEXNotAffected, Justification: "vulnerable_code_not_in_execute_path"},
		"CVE-2022-0778":  {Risk: "controlled", Rationale: "patched in place", VEXStatus: api.VEXFixed},
	}
	for cve, in := range triage {
		if _, err := w.svc.Triage(ctx, w.finding(cve).ID, in); err != nil {
			t.Fatal(err)
		}
	}
	b, media, err := w.svc.VEX(ctx, "demo-pump", "1.0.0", api.VEXFormatCycloneDX)
	if err != nil || media != vigilance.MediaCycloneDX {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_6 || bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) != 5 {
		t.Fatalf("CycloneDX VEX: %s", b)
	}
	states := map[string]cdx.ImpactAnalysisState{}
	for _, v := range *bom.Vulnerabilities {
		states[v.ID] = v.Analysis.State
		if v.Affects == nil || len(*v.Affects) != 1 || !slices.ContainsFunc(*bom.Components, func(c cdx.Component) bool { return c.BOMRef == (*v.Affects)[0].Ref }) {
			t.Errorf("%s affects a component the document does not hold", v.ID)
		}
	}
	want := map[string]cdx.ImpactAnalysisState{"CVE-2014-0160": cdx.IASExploitable, "CVE-2022-48174": cdx.IASNotAffected, "CVE-2022-0778": cdx.IASResolved,
		"CVE-2022-37434": cdx.IASInTriage, "CVE-2023-38545": cdx.IASInTriage}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("%s: state %q, want %q", id, states[id], st)
		}
	}
	b, _, err = w.svc.VEX(ctx, "demo-pump", "1.0.0", api.VEXFormatOpenVEX)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openvex.Parse(b)
	if err != nil || len(doc.Statements) != 5 {
		t.Fatalf("OpenVEX %v: %s", err, b)
	}
	for _, s := range doc.Statements {
		if err := s.Validate(); err != nil {
			t.Errorf("statement %s: %v", s.Vulnerability.Name, err)
		}
		if s.Vulnerability.Name == "CVE-2022-48174" && (s.Status != openvex.StatusNotAffected || s.Justification != "vulnerable_code_not_in_execute_path") {
			t.Errorf("not_affected statement %+v", s)
		}
	}
	if _, _, err := w.svc.VEX(ctx, "demo-pump", "9.9.9", api.VEXFormatOpenVEX); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("a release without an SBOM: %v", err)
	}
	if _, _, err := w.svc.VEX(ctx, "demo-pump", "1.0.0", "spdx"); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("an unknown format: %v", err)
	}
}

func TestAScheduledFeedIsFetchedWithConditionalGETs(t *testing.T) {
	w := newWorld(t)
	kevFile := filepath.Join(w.dir, "kev", "known_exploited_vulnerabilities.json")
	body, err := os.ReadFile(kevFile)
	if err != nil {
		t.Fatal(err)
	}
	var full, conditional atomic.Int32
	etag := `"v1"`
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == etag {
			conditional.Add(1)
			rw.WriteHeader(http.StatusNotModified)
			return
		}
		full.Add(1)
		rw.Header().Set("ETag", etag)
		rw.Write(body)
	}))
	defer srv.Close()
	fc, err := vigilance.ParseFeedConfig("kev " + srv.URL + "/known_exploited_vulnerabilities.json 1h")
	if err != nil {
		t.Fatal(err)
	}
	fetcher := &vigilance.Fetcher{Service: w.svc, TempDir: t.TempDir()}
	rep, notModified, err := fetcher.Fetch(t.Context(), fc)
	if err != nil || notModified || rep.New != 1404 {
		t.Fatalf("first fetch: %+v %v %v", rep, notModified, err)
	}
	if _, notModified, err = fetcher.Fetch(t.Context(), fc); err != nil || !notModified || full.Load() != 1 || conditional.Load() != 1 {
		t.Fatalf("second fetch: not modified %v, %v; %d full, %d conditional", notModified, err, full.Load(), conditional.Load())
	}
	st, err := w.svc.FeedStatus(t.Context(), []vigilance.FeedConfig{fc})
	if err != nil || len(st.Scheduled) != 1 || st.Scheduled[0].Message != "not modified" || st.Scheduled[0].Succeeded.IsZero() || st.KEVEntries != 1404 {
		t.Fatalf("status %+v %v", st, err)
	}
	etag = `"v2"`
	body = []byte(`{"vulnerabilities": [{"cveID": "not-a-cve", "dateAdded": "2025-01-01"}]}`)
	if _, _, err := fetcher.Fetch(t.Context(), fc); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("a malformed catalog: %v", err)
	}
	if st, _ := w.svc.FeedStatus(t.Context(), []vigilance.FeedConfig{fc}); !strings.HasPrefix(st.Scheduled[0].Message, "failed:") || st.KEVEntries != 1404 {
		t.Fatalf("after a bad fetch the old catalog must stay: %+v", st)
	}
	for _, bad := range []string{"kev", "rss https://x/y", "osv ftp://x/y", "nvd https://x/y 10ms", "osv https:///path", "kev https://x/y 1h extra"} {
		if _, err := vigilance.ParseFeedConfig(bad); err == nil {
			t.Errorf("feed %q accepted", bad)
		}
	}
}
