package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/webhooksig"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// feedPaths are the test data's feeds: KEV catalog, NVD and OSV.
type feedPaths struct{ kev, nvd, osv string }

func testFeeds(t testing.TB) feedPaths {
	dir := vigilancetest.Dir(t)
	fp := feedPaths{kev: filepath.Join(dir, "kev", "known_exploited_vulnerabilities.json"), nvd: filepath.Join(dir, "nvd")}
	zips, _ := filepath.Glob(filepath.Join(dir, "osv", "*.zip"))
	if len(zips) != 1 {
		t.Fatalf("want one OSV zip in %s/osv, found %v", dir, zips)
	}
	fp.osv = zips[0]
	return fp
}

// api runs a vigil command that talks to the server only (no keys).
func (f *repoFixture) api(t testing.TB, args ...string) string {
	t.Helper()
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", append(args, "--server", f.srv.URL)...)
	if code != 0 {
		t.Fatalf("vigil %v: exit %d\n%s\nserver:\n%s", args, code, out, f.srv.logs)
	}
	return out
}

func (f *repoFixture) importFeeds(t testing.TB, fp feedPaths) []api.ImportReport {
	t.Helper()
	var reps []api.ImportReport
	if err := json.Unmarshal([]byte(f.api(t, "feed", "import", "--kev", fp.kev, "--nvd", fp.nvd, "--osv", fp.osv, "-o", "json")), &reps); err != nil {
		t.Fatal(err)
	}
	return reps
}

// sbomRelease is the release an SBOM describes.
func sbomRelease(t testing.TB, path string) (product, version string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	doc, err := sbom.Parse(fh)
	if err != nil {
		t.Fatal(err)
	}
	return doc.Product[strings.LastIndex(doc.Product, "/")+1:], strings.TrimPrefix(doc.Version, "v")
}

func (f *repoFixture) findings(t testing.TB, args ...string) api.FindingList {
	t.Helper()
	var l api.FindingList
	if err := json.Unmarshal([]byte(f.api(t, append([]string{"findings", "list", "-o", "json"}, args...)...)), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func scanned(l api.FindingList) []vigilance.Finding {
	out := make([]vigilance.Finding, 0, len(l.Findings))
	for _, d := range l.Findings {
		out = append(out, d.Finding)
	}
	return out
}

// testServerReproducesTheExpectedFindings publishes every SBOM of the test
// data as a release (before the feeds, as a maker's history would be:
// the KEV gate applies to releases published after), imports the feeds,
// and checks the server's findings of each release, and the offline scan
// of each SBOM, against expected-matches.json.
func testServerReproducesTheExpectedFindings(t *testing.T, f *repoFixture) {
	dir := vigilancetest.Dir(t)
	exps := vigilancetest.Load(t)
	releases := map[string]string{}
	products := map[string]bool{"demo-pump": true}
	for _, e := range exps {
		if _, done := releases[e.SBOM]; done {
			continue
		}
		path := filepath.Join(dir, e.SBOM)
		product, version := sbomRelease(t, path)
		if !products[product] {
			if code, out := runBin(t, nil, "vigil", "keys", "generate", "product-"+product, "--dir", f.keys); code != 0 {
				t.Fatal(out)
			}
			f.vigilOK(t, "repo", "add-product", product)
			products[product] = true
		}
		f.vigilOK(t, "release", "publish", "--product", product, "--version", version, "--file", image(t, f.tmp, 4096), "--hardware", "rev-b", "--sbom", path)
		releases[e.SBOM] = product + "@" + version
	}
	fp := testFeeds(t)
	for _, r := range f.importFeeds(t, fp) {
		if len(r.Skipped) != 0 || r.Records == 0 {
			t.Fatalf("import %+v", r)
		}
	}
	for _, e := range exps {
		t.Run(filepath.Base(e.SBOM)+"/"+strings.Fields(e.Feed)[0], func(t *testing.T) {
			vigilancetest.Check(t, e, scanned(f.findings(t, "--release", releases[e.SBOM])))
			var res struct {
				Findings []vigilance.Finding `json:"findings"`
			}
			out := f.api(t, "sbom", "scan", filepath.Join(dir, e.SBOM), "--osv", fp.osv, "--nvd", fp.nvd, "--kev", fp.kev, "-o", "json")
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err)
			}
			vigilancetest.Check(t, e, res.Findings)
		})
	}
	// The unchanged feeds again: nothing is rewritten, no finding moves.
	for _, r := range f.importFeeds(t, fp) {
		if r.New+r.Changed != 0 || r.FindingsOpened+r.FindingsClosed != 0 {
			t.Fatalf("re-import of unchanged feeds changed something: %+v", r)
		}
	}
}

func TestServerReproducesTheExpectedFindingsOnSQLite(t *testing.T) {
	testServerReproducesTheExpectedFindings(t, newRepo(t, nil))
}

func TestServerReproducesTheExpectedFindingsOnPostgres(t *testing.T) {
	testServerReproducesTheExpectedFindings(t, newRepo(t, nil, "--database-url", testsvc.PostgresDSN(t)))
}

// A release whose SBOM still carries a KEV-listed vulnerability is refused
// (nothing published) unless each one is accepted with a reason, which is
// audited.
func TestPublishRefusesAKnownExploitedVulnerabilityUnlessAcceptedWithAReason(t *testing.T) {
	f := newRepo(t, nil)
	f.importFeeds(t, testFeeds(t))
	sb := filepath.Join(vigilancetest.Dir(t), "sbom", "demo-pump-1.0.0.cdx.json")
	img := image(t, f.tmp, 4096)
	before := snapshotFiles(t, f)
	publish := func(extra ...string) (int, string) {
		return f.vigil(t, append([]string{"release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", img, "--hardware", "rev-b", "--sbom", sb}, extra...)...)
	}
	code, out := publish()
	if code != 3 || !strings.Contains(out, "CVE-2014-0160") || !strings.Contains(out, api.CodeKnownExploited) {
		t.Fatalf("KEV release: exit %d %s", code, out)
	}
	if code, out := publish("--accept-known-vulnerability", "CVE-2014-0160", "--accept-known-vulnerability", "CVE-2022-0778", "--reason", "not reachable from any network interface"); code != 2 || !strings.Contains(out, "CVE-2022-0778 is accepted, but") {
		t.Fatalf("accepting the wrong id: exit %d %s", code, out)
	}
	if code, out := publish("--accept-known-vulnerability", "CVE-2014-0160"); code != 2 || !strings.Contains(out, "--reason") {
		t.Fatalf("accepting without a reason: exit %d %s", code, out)
	}
	if after := snapshotFiles(t, f); after != before {
		t.Fatal("a refused publish changed the repository")
	}
	publish("--accept-known-vulnerability", "CVE-2014-0160", "--reason", "telemetryd listens on loopback only; fix scheduled in 1.1.0")
	if out := f.vigilOK(t, "release", "list"); !strings.Contains(out, "1.0.0") {
		t.Fatalf("accepted release not published: %s", out)
	}
	audit := f.api(t, "audit", "export")
	if !strings.Contains(audit, "release.accept_known_vulnerability") || !strings.Contains(audit, "telemetryd listens on loopback only") {
		t.Fatalf("the acceptance is not in the audit log: %s", audit)
	}
}

// signedReceiver is a webhook endpoint (an alert receiver, a site's
// notice endpoint): it refuses the first failFirst deliveries (a receiver
// that is down for a while), then verifies the HMAC of each and keeps the
// bodies that verify.
type signedReceiver struct {
	mu        sync.Mutex
	failFirst int
	tries     int
	bad       int
	bodies    [][]byte
}

func newSignedReceiver(t *testing.T, secret string, failFirst int) (*signedReceiver, string) {
	r := &signedReceiver{failFirst: failFirst}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.tries++
		if r.tries <= r.failFirst {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := webhooksig.Verify([]byte(secret), req.Header, body, time.Now(), webhooksig.DefaultTolerance); err != nil {
			r.bad++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.bodies = append(r.bodies, body)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// received returns the verified bodies, the attempts and the deliveries
// whose signature did not verify.
func (r *signedReceiver) received() ([][]byte, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), r.tries, r.bad
}

func (r *signedReceiver) count() (int, int) {
	got, _, bad := r.received()
	return len(got), bad
}

// waitFor polls cond until it holds or the deadline passes (for what a
// periodic job on the server does: webhook deliveries, the clock job).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *repoFixture) exposure(t testing.TB, token, vuln string) api.Exposure {
	t.Helper()
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + token}, "vigil", "exposure", vuln, "-o", "json", "--server", f.srv.URL)
	var e api.Exposure
	if code != 0 || json.Unmarshal([]byte(out), &e) != nil {
		t.Fatalf("exposure %s: exit %d %s", vuln, code, out)
	}
	return e
}

func (f *repoFixture) finding(t testing.TB, id string) api.FindingDetail {
	t.Helper()
	var d api.FindingDetail
	if err := json.Unmarshal([]byte(f.api(t, "findings", "show", id, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func exposedAt(e api.Exposure) map[string]int {
	out := map[string]int{}
	for _, r := range e.Rows {
		out[r.Site] += r.Devices
	}
	return out
}

// The morning a CVE lands, end to end: ten devices on 1.0.0 at two sites;
// the feeds arrive; exposure shows both sites (a site's IT sees its own);
// each new finding is an alert, delivered signed to the webhook; the
// security officer triages Heartbleed as uncontrolled; 1.1.0 is published
// with its SBOM and is the fixing release; it rolls out, and as the
// devices commit, exposure drops to zero and the fix clock stops.
func TestFindingsFollowTheFleetFromExposureToDeployedFixOnSQLite(t *testing.T) {
	testFindingsFollowTheFleet(t)
}

func TestFindingsFollowTheFleetFromExposureToDeployedFixOnPostgres(t *testing.T) {
	testFindingsFollowTheFleet(t, "--database-url", testsvc.PostgresDSN(t))
}

func testFindingsFollowTheFleet(t *testing.T, args ...string) {
	const secret = "whsec-0123456789abcdef"
	recv, hook := newSignedReceiver(t, secret, 0)
	f := newRepo(t, []string{"VIGIL_ALERT_WEBHOOK_URL=" + hook, "VIGIL_ALERT_WEBHOOK_SECRET=" + secret, "VIGIL_VIGILANCE_INTERVAL=1s"}, args...)
	dir := vigilancetest.Dir(t)
	devs := newFleetOf(t, f, 10)
	f.publishImage(t, "1.0.0", appImage(t, f.tmp, "1.0.0", true, 0))
	if l := f.findings(t); !slices.Contains(l.ReleasesWithoutSBOM, "demo-pump@1.0.0") {
		t.Fatalf("a release without an SBOM is not reported as such: %+v", l)
	}
	f.vigilOK(t, "sbom", "attach", "demo-pump@1.0.0", "--file", filepath.Join(dir, "sbom", "demo-pump-1.0.0.cdx.json"))
	f.importFeeds(t, testFeeds(t))

	l := f.findings(t, "--release", "demo-pump@1.0.0")
	if len(l.Findings) != 5 {
		t.Fatalf("findings of 1.0.0: %d", len(l.Findings))
	}
	waitFor(t, "an alert per new finding on a release devices run", 20*time.Second, func() bool { n, _ := recv.count(); return n == 5 })
	if _, bad := recv.count(); bad != 0 {
		t.Fatalf("%d webhook deliveries did not verify", bad)
	}
	e := f.exposure(t, testToken, "CVE-2014-0160")
	if !e.KEV || e.Total != 10 || exposedAt(e)["st-mary"] != 5 || exposedAt(e)["north"] != 5 || e.Fixing["demo-pump"] != "" {
		t.Fatalf("exposure before the fix: %+v", e)
	}
	var tok api.TokenCreated
	json.Unmarshal([]byte(f.api(t, "token", "create", "--name", "north-it", "--role", "site-it", "--sites", "north", "-o", "json")), &tok)
	if e := f.exposure(t, tok.Secret, "CVE-2014-0160"); e.Total != 5 || len(exposedAt(e)) != 1 || exposedAt(e)["north"] != 5 {
		t.Fatalf("north's IT sees another site's exposure: %+v", e)
	}

	var heartbleed api.FindingDetail
	for _, d := range l.Findings {
		if d.VulnerabilityID == "CVE-2014-0160" {
			heartbleed = d
		}
	}
	f.api(t, "finding", "triage", heartbleed.ID, "--risk", "uncontrolled", "--rationale", "telemetryd is reachable from the hospital network",
		"--vex-status", "affected", "--action", "update to 1.1.0")
	if d := f.finding(t, heartbleed.ID); d.Clocks == nil || !d.Clocks.FixDeployed.IsZero() || d.Clocks.Exposed != 10 || d.Risk != "uncontrolled" {
		t.Fatalf("triaged finding: %+v", d)
	}

	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", appImage(t, f.tmp, "1.1.0", true, 0), "--hardware", "rev-b",
		"--sbom", filepath.Join(dir, "sbom", "demo-pump-1.1.0.cdx.json"))
	if d := f.finding(t, heartbleed.ID); d.FixingRelease == nil || d.FixingRelease.Release != "demo-pump@1.1.0" {
		t.Fatalf("fixing release: %+v", d.FixingRelease)
	}
	ro := f.createRollout(t, "--release", "demo-pump@1.1.0", "--select", "product=demo-pump,hardware=rev-b,version<1.1.0",
		"--waves", "all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=3")
	f.approve(t, ro, "st-mary", "all")
	f.approve(t, ro, "north", "all")
	for range maxRounds {
		round(t, devs)
		if committedAt(f.rolloutStatus(t, ro), "st-mary")+committedAt(f.rolloutStatus(t, ro), "north") == 10 {
			break
		}
	}
	// Commits reach the registry with the next batch of check-ins (every
	// LastSeenFlushInterval).
	waitFor(t, "exposure drops to zero", 30*time.Second, func() bool { return f.exposure(t, testToken, "CVE-2014-0160").Total == 0 })
	if e := f.exposure(t, testToken, "CVE-2014-0160"); e.Fixing["demo-pump"] != "1.1.0" {
		t.Fatalf("exposure after the rollout: %+v", e)
	}
	waitFor(t, "the fix clock stops", 20*time.Second, func() bool {
		d := f.finding(t, heartbleed.ID)
		return d.Clocks != nil && !d.Clocks.FixDeployed.IsZero()
	})
	d := f.finding(t, heartbleed.ID)
	if d.Clocks.Remediated != 10 || d.Clocks.Exposed != 0 || len(d.Clocks.Overdue) != 0 || d.FixingRelease.Committed != 10 ||
		len(d.FixingRelease.Rollouts) != 1 || d.FixingRelease.Rollouts[0].Committed != 10 {
		t.Fatalf("after the fix: clocks %+v fixing %+v", d.Clocks, d.FixingRelease)
	}
	metrics := getBytes(t, f.srv.URL+"/metrics")
	for _, want := range []string{`vigil_findings_open{kev="true",risk="uncontrolled"} 1`, `vigil_findings_overdue 0`, `vigil_finding_alerts_total 5`,
		`vigil_webhook_deliveries_total{result="delivered"} 5`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	vex := f.api(t, "vex", "export", "demo-pump@1.0.0", "--format", "openvex")
	if !strings.Contains(vex, `"status": "affected"`) || !strings.Contains(vex, "update to 1.1.0") {
		t.Fatalf("OpenVEX: %s", vex)
	}
	audit := f.api(t, "audit", "export")
	for _, want := range []string{"finding.triage", "finding.fix_deployed", "vigilance.feed_import"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}
