package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// public sends an unauthenticated request (a researcher's).
func public(t *testing.T, method, url, secret string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(api.HeaderReportSecret, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	return resp.StatusCode, string(b)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestDisclosureFromReportToPublicDisclosureOnSQLite(t *testing.T) {
	testDisclosure(t)
}

func TestDisclosureFromReportToPublicDisclosureOnPostgres(t *testing.T) {
	testDisclosure(t, "--database-url", testsvc.PostgresDSN(t))
}

// A researcher finds security.txt, reports (hostile markup in the text,
// an attachment), follows the case with its secret alone, and sees it
// move from received to disclosed while the maker acknowledges, triages,
// confirms and links it to a finding on the affected release (an
// internal VIGIL- id, no CVE yet). Another case's secret reads nothing;
// oversized, malformed and flooding reports get clear 4xx answers and
// leave nothing behind.
func testDisclosure(t *testing.T, args ...string) {
	expires := time.Now().UTC().Add(180 * 24 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
	f := newRepo(t, []string{"VIGIL_SECURITY_CONTACT=mailto:psirt@maker.example,https://maker.example/security", "VIGIL_SECURITY_EXPIRES=" + expires,
		"VIGIL_SECURITY_POLICY=https://maker.example/cvd-policy", "VIGIL_CVD_REPORTS_PER_HOUR=5", "VIGIL_CVD_REQUESTS_PER_MINUTE=200"}, args...)
	base := f.srv.URL
	f.publishImage(t, "1.0.0", appImage(t, f.tmp, "1.0.0", true, 0))

	code, txt := public(t, "GET", base+api.RouteSecurityTxt, "", nil)
	for _, want := range []string{"Contact: mailto:psirt@maker.example\n", "Contact: https://maker.example/security\n", "Expires: " + expires + "\n",
		"Policy: https://maker.example/cvd-policy\n", "Preferred-Languages: en\n"} {
		if code != 200 || !strings.Contains(txt, want) {
			t.Fatalf("security.txt (%d) lacks %q:\n%s", code, want, txt)
		}
	}

	hostile := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	report := api.CVDReport{Title: "Telemetry port accepts unauthenticated commands " + hostile, Description: "Steps:\n1. nc pump 7000\n2. " + hostile,
		Product: "demo-pump", Version: "1.0.0", Contact: "researcher@example.org",
		Attachments: []api.CVDAttachment{{Name: "poc.py", MediaType: "text/x-python", Data: []byte("print('poc')\n")}}}
	code, body := public(t, "POST", base+api.RouteCVDReports, "", mustJSON(report))
	var rc api.CVDReceipt
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &rc) != nil || rc.Secret == "" || rc.Status != "received" {
		t.Fatalf("report: %d %s", code, body)
	}
	code, other := public(t, "POST", base+api.RouteCVDReports, "", mustJSON(api.CVDReport{Title: "second", Description: "another issue", Product: "demo-pump"}))
	var rc2 api.CVDReceipt
	json.Unmarshal([]byte(other), &rc2)

	caseURL := base + api.Path(api.RouteCVDReport, rc.ID)
	code, body = public(t, "GET", caseURL, rc.Secret, nil)
	if code != 200 || strings.Contains(body, "<script>") || !strings.Contains(body, `\u003cscript\u003e`) {
		t.Fatalf("the reporter's view (%d) does not escape markup: %s", code, body)
	}
	for _, secret := range []string{"", "wrong", rc2.Secret} {
		if code, body := public(t, "GET", caseURL, secret, nil); code != 404 || strings.Contains(body, "Telemetry") {
			t.Fatalf("case read with secret %q: %d %s", secret, code, body)
		}
	}
	if code, _ := public(t, "GET", base+api.Path(api.RouteCVDReport, rc2.ID), rc.Secret, nil); code != 404 {
		t.Fatalf("one case's secret reads another case: %d", code)
	}
	if code, body := public(t, "POST", base+api.Path(api.RouteCVDReportNotes, rc.ID), rc.Secret, mustJSON(api.CVDMessageIn{Text: "Video of the PoC on request."})); code != 200 {
		t.Fatalf("reporter message: %d %s", code, body)
	}
	// Only the public routes answer without a token.
	if code, _ := public(t, "GET", base+api.RouteCVDCases, "", nil); code != 401 {
		t.Fatalf("case list without a token: %d", code)
	}

	// Bad input: clear 4xx, nothing stored.
	countCases := func() int {
		var l api.CVDCaseList
		f.apiJSON(t, &l, "cvd", "list")
		return len(l.Cases)
	}
	before := countCases()
	big := api.CVDReport{Title: "big", Description: "d", Product: "demo-pump", Attachments: []api.CVDAttachment{{Name: "dump.bin", Data: make([]byte, 2<<20)}}}
	huge := append([]byte(`{"title":"x","description":"`), bytes.Repeat([]byte("A"), 5<<20)...)
	for _, c := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"malformed JSON", []byte(`{"title":`), 400, "not valid JSON"},
		{"unknown field", []byte(`{"title":"t","description":"d","product":"demo-pump","admin":true}`), 400, "unknown field"},
		{"no title", mustJSON(api.CVDReport{Description: "d", Product: "demo-pump"}), 400, "title is required"},
		{"control characters", mustJSON(api.CVDReport{Title: "t\x1b[2J", Description: "d", Product: "demo-pump"}), 400, "control character"},
		{"path as attachment name", mustJSON(api.CVDReport{Title: "t", Description: "d", Product: "demo-pump", Attachments: []api.CVDAttachment{{Name: "../../etc/passwd", Data: []byte("x")}}}), 400, "is a path"},
		{"oversized attachment", mustJSON(big), 413, "attachments[0] is 2097152 bytes"},
		{"oversized body", huge, 413, "over the limit"},
	} {
		code, body := public(t, "POST", base+api.RouteCVDReports, "", c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, code, body, c.code, c.want)
		}
	}
	if n := countCases(); n != before {
		t.Fatalf("refused reports were stored: %d cases, had %d", n, before)
	}

	// The maker works the case.
	f.api(t, "cvd", "ack", rc.ID, "--note", "thank you; triage within 5 days")
	if code, body := public(t, "GET", caseURL, rc.Secret, nil); !strings.Contains(body, `"status":"acknowledged"`) || strings.Contains(body, "thank you") {
		t.Fatalf("the reporter sees (%d): %s", code, body)
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "cvd", "disclose", rc.ID, "--server", base); code == 0 || !strings.Contains(out, "can move to triaged") {
		t.Fatalf("a jump to disclosed: %d %s", code, out)
	}
	f.api(t, "cvd", "triage", rc.ID, "--note", "reproduced on rev-b")
	f.api(t, "cvd", "confirm", rc.ID, "--note", "unauthenticated command channel")
	var linked api.CVDCase
	f.apiJSON(t, &linked, "cvd", "link", rc.ID, "--release", "demo-pump@1.0.0", "--summary", "telemetry port accepts unauthenticated commands")
	if !strings.HasPrefix(linked.Vulnerability, "VIGIL-") || len(linked.Findings) != 1 {
		t.Fatalf("link: %+v", linked)
	}
	fd := f.finding(t, linked.Findings[0])
	if fd.VulnerabilityID != linked.Vulnerability || fd.Release != "demo-pump@1.0.0" || fd.Status != "open" {
		t.Fatalf("the finding of the case: %+v", fd)
	}
	f.api(t, "finding", "triage", fd.ID, "--risk", "uncontrolled", "--rationale", "reachable on the clinical network", "--vex-status", "affected", "--action", "update")
	if d := f.finding(t, fd.ID); d.Clocks == nil || d.Clocks.NoticeDue.IsZero() {
		t.Fatalf("the 30/60-day clocks do not apply to the case's finding: %+v", d.Clocks)
	}
	f.api(t, "cvd", "fixed", rc.ID, "--note", "fixed in 1.1.0")
	f.api(t, "cvd", "disclose", rc.ID, "--note", "advisory published")
	var view api.CVDReporterView
	_, body = public(t, "GET", caseURL, rc.Secret, nil)
	json.Unmarshal([]byte(body), &view)
	var states []string
	for _, h := range view.History {
		states = append(states, h.To)
		if h.By != "" {
			t.Fatalf("the reporter sees who acted: %+v", h)
		}
	}
	if view.Status != "disclosed" || view.Vulnerability != linked.Vulnerability || strings.Join(states, ",") != "received,acknowledged,triaged,confirmed,fixed,disclosed" ||
		len(view.Messages) != 1 {
		t.Fatalf("the reporter's final view: %+v", view)
	}
	var k api.CVDCase
	f.apiJSON(t, &k, "cvd", "show", rc.ID)
	if len(k.History) != 6 || k.History[1].By == "" || k.Attachments[0].Size != len("print('poc')\n") {
		t.Fatalf("the maker's view: %+v", k)
	}
	audit := f.api(t, "audit", "export")
	for _, want := range []string{"cvd.received", "cvd.acknowledged", "cvd.confirmed", "cvd.link", "cvd.disclosed", "finding.open"} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}

	// A flood from one address: at most cvd_reports_per_hour cases, then 429.
	stored := countCases()
	var accepted, limited int
	for i := range 40 {
		code, body := public(t, "POST", base+api.RouteCVDReports, "", mustJSON(api.CVDReport{Title: "flood", Description: "spam", Product: "demo-pump"}))
		switch {
		case code == http.StatusCreated:
			accepted++
		case code == http.StatusTooManyRequests && strings.Contains(body, api.CodeRateLimited):
			limited++
		default:
			t.Fatalf("flood request %d: %d %s", i, code, body)
		}
	}
	if stored+accepted != 5 || limited != 40-accepted || countCases() != 5 {
		t.Fatalf("flood: %d accepted, %d limited, %d cases stored (had %d)", accepted, limited, countCases(), stored)
	}
}

// A server whose security.txt has expired refuses to start, naming the
// setting.
func TestExpiredSecurityTxtRefusesToStart(t *testing.T) {
	code, out := runBin(t, append(cleanEnv(), "VIGIL_SECURITY_CONTACT=mailto:psirt@maker.example", "VIGIL_SECURITY_EXPIRES=2020-01-01T00:00:00Z"),
		"vigil-server", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(out, "security_expires") || !strings.Contains(out, "expired") {
		t.Fatalf("exit %d: %s", code, out)
	}
}
