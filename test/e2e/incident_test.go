package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// noticesIn decodes what a site's webhook received.
func noticesIn(bodies [][]byte) []api.NoticeEvent {
	var out []api.NoticeEvent
	for _, b := range bodies {
		var ev api.NoticeEvent
		json.Unmarshal(b, &ev)
		out = append(out, ev)
	}
	return out
}

// apiJSON runs a vigil command with -o json and decodes its output.
func (f *repoFixture) apiJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := f.api(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vigil %v: %v\n%s", args, err, out)
	}
}

// stageOnlyInterlock makes a device's clinical-use check report "in use"
// once a release is staged in slot b while busy exists: the device
// downloads and stages, then waits to switch.
func stageOnlyInterlock(t *testing.T, d *fleetDevice, busy string) {
	t.Helper()
	b, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(b, &cfg)
	cfg["interlock"] = map[string]any{"command": "if [ -f " + filepath.Join(d.slots, "b", "VERSION") + " ] && [ -f " + busy + " ]; then echo infusion running; exit 1; fi"}
	b, _ = json.Marshal(cfg)
	os.WriteFile(d.config, b, 0o600)
}

// sbomFor rewrites the test data's 1.1.0 SBOM for another version.
func sbomFor(t *testing.T, dir, version string) string {
	b, err := os.ReadFile(filepath.Join(vigilancetest.Dir(t), "sbom", "demo-pump-1.1.0.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "demo-pump@1.1.0", "demo-pump@"+version)
	s = strings.Replace(s, `"version": "1.1.0"`, `"version": "`+version+`"`, 1)
	p := filepath.Join(dir, "demo-pump-"+version+".cdx.json")
	os.WriteFile(p, []byte(s), 0o644)
	return p
}

func TestIncidentFromKEVFindingToDeployedFixOnSQLite(t *testing.T) {
	testIncidentResponse(t)
}

func TestIncidentFromKEVFindingToDeployedFixOnPostgres(t *testing.T) {
	testIncidentResponse(t, "--database-url", testsvc.PostgresDSN(t))
}

// The scripted incident: a KEV finding on 1.0.0 → open an incident → a
// bad 1.1.0 is halted and revoked while every device has it staged (none
// switches to it) → 1.1.1 is published as the fix → a notice reaches both
// sites (a webhook that fails its first tries, an e-mail through the
// relay), each acknowledges → 1.1.1 rolls out → the patching report and
// the incident's timeline show every step; the evidence bundle verifies,
// and a byte changed in it is named.
func testIncidentResponse(t *testing.T, args ...string) {
	const secret = "notice-secret-0123456789"
	sink := testsvc.StartSMTPSink(t)
	recv, hook := newSignedReceiver(t, secret, 2)
	f := newRepo(t, []string{"VIGIL_VIGILANCE_INTERVAL=1s", "VIGIL_NOTICE_INTERVAL=200ms", "VIGIL_NOTICE_RETRY_BASE=100ms",
		"VIGIL_SMTP_RELAY=" + sink.Addr, "VIGIL_SMTP_FROM=psirt@maker.example"}, args...)
	start := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	dir := vigilancetest.Dir(t)
	devs := newFleetOf(t, f, 4)
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", appImage(t, f.tmp, "1.0.0", true, 0), "--hardware", "rev-b",
		"--sbom", filepath.Join(dir, "sbom", "demo-pump-1.0.0.cdx.json"))
	f.importFeeds(t, testFeeds(t))
	var heartbleed string
	for _, d := range f.findings(t, "--release", "demo-pump@1.0.0").Findings {
		if d.VulnerabilityID == "CVE-2014-0160" {
			heartbleed = d.ID
		}
	}
	if heartbleed == "" {
		t.Fatal("no KEV finding on 1.0.0")
	}
	secretFile := filepath.Join(f.tmp, "hook-secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	f.api(t, "notice", "contacts", "st-mary", "--webhook-url", hook, "--webhook-secret-file", secretFile)
	f.api(t, "notice", "contacts", "north", "--email", "biomed@north.example")

	var inc api.Incident
	f.apiJSON(t, &inc, "incident", "open", "--title", "Heartbleed (KEV) in demo-pump 1.0.0", "--severity", "critical", "--product", "demo-pump", "--finding", heartbleed)
	f.api(t, "finding", "triage", heartbleed, "--risk", "uncontrolled", "--rationale", "telemetryd is reachable from the hospital network",
		"--vex-status", "affected", "--action", "update to 1.1.1")

	// A bad 1.1.0 goes out; every device stages it but is in use.
	busy := filepath.Join(f.tmp, "in-use")
	os.WriteFile(busy, nil, 0o644)
	for _, d := range devs {
		stageOnlyInterlock(t, d, busy)
	}
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", appImage(t, f.tmp, "1.1.0", true, 0), "--hardware", "rev-b",
		"--sbom", filepath.Join(dir, "sbom", "demo-pump-1.1.0.cdx.json"))
	bad := f.createRollout(t, "--release", "demo-pump@1.1.0", "--select", "product=demo-pump,hardware=rev-b,version<1.1.0",
		"--waves", "all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=3")
	f.approve(t, bad, "st-mary", "all")
	f.approve(t, bad, "north", "all")
	for range maxRounds {
		round(t, devs)
		staged := 0
		for _, d := range devs {
			if d.status(t).Phase == "staged" {
				staged++
			}
		}
		if staged == len(devs) {
			break
		}
	}
	for _, d := range devs {
		if s := d.status(t); s.Phase != "staged" {
			t.Fatalf("%s: %s (%s), want staged", d.id, s.Phase, s.Reason)
		}
	}
	f.api(t, "incident", "halt", inc.ID, "--release", "demo-pump@1.1.0", "--note", "boot loop reported by st-mary biomed", "--yes")
	if st := f.rolloutStatus(t, bad); st.State != "halted" {
		t.Fatalf("rollout of 1.1.0 after the halt: %s", st.State)
	}
	f.vigilOK(t, "release", "revoke", "demo-pump@1.1.0", "--reason", "boot loop on rev-b", "--incident", inc.ID, "--yes")
	if out := f.vigilOK(t, "release", "list"); strings.Contains(out, "1.1.0") {
		t.Fatalf("1.1.0 is still listed after the revoke: %s", out)
	}
	if code, out := f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", appImage(t, f.tmp, "1.1.0", true, 7), "--hardware", "rev-b"); code == 0 || !strings.Contains(out, "was revoked") {
		t.Fatalf("re-publishing the revoked version: exit %d %s", code, out)
	}
	os.Remove(busy) // therapy over: the devices may switch now, but 1.1.0 is gone
	round(t, devs)
	for _, d := range devs {
		s := d.status(t)
		if s.Phase != "failed" || !strings.Contains(s.Reason, "revoked") || s.Installed != "1.0.0" {
			t.Fatalf("%s after the revoke: %s (%s) running %s", d.id, s.Phase, s.Reason, s.Installed)
		}
	}

	// The fix, published through the incident, and the notices.
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.1", "--file", appImage(t, f.tmp, "1.1.1", true, 0), "--hardware", "rev-b",
		"--sbom", sbomFor(t, f.tmp, "1.1.1"), "--incident", inc.ID, "--reason", "fix: OpenSSL 1.1.1w, boot loop fixed")
	textFile := filepath.Join(f.tmp, "notice.txt")
	os.WriteFile(textFile, []byte("Heartbleed (CVE-2014-0160) affects demo-pump 1.0.0.\nInstall 1.1.1; until then keep pumps off guest networks.\n"), 0o644)
	var n api.Notice
	f.apiJSON(t, &n, "notice", "create", "--incident", inc.ID, "--sites", "all", "--severity", "critical", "--title", "Update demo-pump to 1.1.1", "--text", textFile, "--yes")
	var fn api.Notice
	f.apiJSON(t, &fn, "notice", "create", "--finding", heartbleed, "--sites", "st-mary,north", "--severity", "critical", "--title", "Heartbleed in demo-pump 1.0.0", "--text", textFile, "--yes")
	if d := f.finding(t, heartbleed); d.Clocks == nil || d.Clocks.Notified.IsZero() {
		t.Fatalf("a notice about the finding did not stop its notice clock: %+v", d.Clocks)
	}
	waitFor(t, "both notices delivered to st-mary's webhook after its failures", 30*time.Second, func() bool { n, _ := recv.count(); return n == 2 })
	waitFor(t, "both notices mailed to north", 30*time.Second, func() bool { return len(sink.Messages()) == 2 })
	bodies, tries, badSig := recv.received()
	got := noticesIn(bodies)
	if badSig != 0 || tries < 4 || got[0].Site != "st-mary" || !slices.Contains([]string{n.ID, fn.ID}, got[0].Notice.ID) {
		t.Fatalf("webhook: %d tries, %d bad signatures, %+v", tries, badSig, got)
	}
	if m := sink.Messages()[0]; m.To[0] != "biomed@north.example" || m.From != "psirt@maker.example" || !strings.Contains(m.Data, "Install 1.1.1") {
		t.Fatalf("mail: %+v", m)
	}
	var tok api.TokenCreated
	f.apiJSON(t, &tok, "token", "create", "--name", "north-it", "--role", "site-it", "--sites", "north")
	siteIT := func(args ...string) (int, string) {
		return runBin(t, []string{"VIGIL_TOKEN=" + tok.Secret}, "vigil", append(args, "--server", f.srv.URL)...)
	}
	code, out := siteIT("notice", "list", "--unacked", "-o", "json")
	var mine api.NoticeList
	if code != 0 || json.Unmarshal([]byte(out), &mine) != nil || len(mine.Notices) != 2 {
		t.Fatalf("north's notices: %d %s", code, out)
	}
	for _, x := range mine.Notices {
		if len(x.Deliveries) != 1 || x.Deliveries[0].Site != "north" || x.Deliveries[0].Email != "delivered" {
			t.Fatalf("north's IT sees %+v", x.Deliveries)
		}
	}
	if code, out := siteIT("notice", "ack", n.ID, "--site", "st-mary"); code == 0 || !strings.Contains(out, "may not acknowledge") {
		t.Fatalf("north acknowledging for st-mary: %d %s", code, out)
	}
	if code, out := siteIT("notice", "ack", n.ID, "--comment", "pumps moved off the guest network"); code != 0 {
		t.Fatalf("ack: %s", out)
	}
	f.api(t, "notice", "ack", n.ID, "--site", "st-mary")
	var open api.NoticeList
	f.apiJSON(t, &open, "notice", "list", "--unacked")
	if len(open.Notices) != 1 || open.Notices[0].ID != fn.ID {
		t.Fatalf("unacknowledged notices: %+v", open)
	}

	// The fix rolls out.
	good := f.createRollout(t, "--release", "demo-pump@1.1.1", "--select", "product=demo-pump,hardware=rev-b,version<1.1.1",
		"--waves", "all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=3")
	f.approve(t, good, "st-mary", "all")
	f.approve(t, good, "north", "all")
	for range maxRounds {
		round(t, devs)
		if st := f.rolloutStatus(t, good); committedAt(st, "st-mary")+committedAt(st, "north") == len(devs) {
			break
		}
	}
	waitFor(t, "the fix clock stops", 30*time.Second, func() bool {
		d := f.finding(t, heartbleed)
		return d.Clocks != nil && !d.Clocks.FixDeployed.IsZero()
	})
	var rep api.PatchingReport
	f.apiJSON(t, &rep, "report", "patching", "--product", "demo-pump")
	byRel := map[string]api.ReleaseMetrics{}
	for _, m := range rep.Releases {
		byRel[m.Release] = m
	}
	if m := byRel["demo-pump@1.1.1"]; m.Committed != len(devs) || m.Eligible != len(devs) || m.MedianHours == nil || m.P90Hours == nil {
		t.Fatalf("1.1.1 metrics: %+v", m)
	}
	if m := byRel["demo-pump@1.1.0"]; m.Revoked.IsZero() || m.Committed != 0 {
		t.Fatalf("1.1.0 metrics: %+v", m)
	}
	for _, s := range rep.Sites {
		if s.Devices != 2 || s.Clean != 2 || s.Share != 1 {
			t.Fatalf("site %+v", s)
		}
	}

	var tl api.Timeline
	f.apiJSON(t, &tl, "incident", "timeline", inc.ID)
	var steps []string
	phases := map[string]bool{}
	for _, e := range tl.Entries {
		steps = append(steps, e.Action+" "+e.Subject)
		phases[e.Phase] = true
	}
	for _, want := range []string{"finding.open " + heartbleed, "incident.open " + inc.ID, "finding.triage " + heartbleed, "incident.halt " + inc.ID, "release.halt demo-pump@1.1.0",
		"release.revoke demo-pump@1.1.0", "release.publish demo-pump@1.1.1", "notice.create " + n.ID, "notice.delivered " + n.ID, "notice.ack " + n.ID,
		"rollout.create " + good, "finding.fix_deployed " + heartbleed} {
		if !slices.Contains(steps, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, strings.Join(steps, "\n"))
		}
	}
	for _, p := range []string{"detection", "assessment", "containment", "notice", "remediation", "fix_deployed"} {
		if !phases[p] {
			t.Errorf("the timeline has no %s step", p)
		}
	}
	if !slices.Contains(steps, "rollout.create "+bad) {
		t.Errorf("the halted rollout of the linked release 1.1.0 is not on the timeline")
	}

	// The evidence bundle: verifies; one changed byte is named.
	bundle := filepath.Join(f.tmp, "evidence.zip")
	f.api(t, "evidence", "export", "--since", start.Format(time.RFC3339), "--until", time.Now().UTC().Add(time.Minute).Format(time.RFC3339), "--out", bundle)
	out = f.api(t, "evidence", "verify", bundle)
	if !strings.Contains(out, "files checked") || strings.Contains(out, "TAMPERED") {
		t.Fatalf("verify: %s", out)
	}
	names := zipNames(t, bundle)
	for _, want := range []string{"sboms/demo-pump@1.1.1.cdx.json", "vex/demo-pump@1.1.1.cdx.json", "findings.json", "cvd-cases.json", "incidents/" + inc.ID + ".json",
		"notices.json", "rollouts.json", "reports/patching.json", "audit/chain.json", "manifest.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("the bundle lacks %s (has %v)", want, names)
		}
	}
	tampered := tamperZip(t, bundle, "notices.json")
	code, out = runBin(t, nil, "vigil", "evidence", "verify", tampered)
	if code != 3 || !strings.Contains(out, "TAMPERED notices.json") {
		t.Fatalf("a tampered bundle: exit %d %s", code, out)
	}
}

func zipNames(t *testing.T, path string) []string {
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out []string
	for _, f := range zr.File {
		out = append(out, f.Name)
	}
	return out
}

// tamperZip rewrites the bundle with one byte of name changed (a valid
// zip whose file no longer matches the manifest).
func tamperZip(t *testing.T, path, name string) string {
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if f.Name == name {
			i := bytes.IndexByte(b, '"')
			b[i+1] ^= 0x01
		}
		w, _ := zw.Create(f.Name)
		w.Write(b)
	}
	zw.Close()
	out := filepath.Join(filepath.Dir(path), "tampered.zip")
	os.WriteFile(out, buf.Bytes(), 0o644)
	return out
}
