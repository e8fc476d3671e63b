package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// EnvScreenshots names the directory the console test writes the main
// pages' screenshots to (make console-docs sets it to docs/console).
const EnvScreenshots = "VIGIL_CONSOLE_SCREENSHOTS"

// browserTimeout bounds one browser session of a test.
const browserTimeout = 90 * time.Second

// browser is one headless Chromium session (its own cookies) on a server.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(testsvc.Chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\npage:\n%s", err, b.html())
	}
}

func (b *browser) visit(path string) { b.t.Helper(); b.do(chromedp.Navigate(b.base + path)) }

func (b *browser) html() string {
	s, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	return s
}

// queryTimeout bounds waiting for one element.
const queryTimeout = 15 * time.Second

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, queryTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v\npage:\n%s", sel, err, b.html())
	}
	return s
}

// liveText reads an element's text in one step (the page's script may
// replace the element between a query and a read).
func (b *browser) liveText(sel string) string {
	b.t.Helper()
	return eval[string](b, `(document.querySelector(`+jsString(sel)+`) || {innerText: ""}).innerText`)
}

func (b *browser) location() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Location())
	return s
}

// eval runs JavaScript in the page and returns its JSON result.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.visit("/console/")
	b.do(chromedp.WaitVisible(chromedp.ID("token")), chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS("header nav")))
}

// shot saves a screenshot of the page for docs/console.md.
func (b *browser) shot(name string) {
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// postFrom posts a form from inside the page (as a forged or replayed
// request would) and returns the status.
func postFrom(b *browser, path, body string) int {
	return eval[int](b, `fetch(`+jsString(path)+`, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: `+jsString(body)+`, redirect: "manual"}).then(r => r.status)`)
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func (f *repoFixture) token(t *testing.T, args ...string) api.TokenCreated {
	t.Helper()
	var tok api.TokenCreated
	if err := json.Unmarshal([]byte(f.api(t, append([]string{"token", "create", "-o", "json"}, args...)...)), &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// consoleWorld is a server with demo-pump 1.0.0 and 1.1.0 (with SBOMs and
// hostile release notes), the feeds, four agents at st-mary and north, a
// rollout of 1.1.0 waiting for both sites, and tokens for each role.
type consoleWorld struct {
	f                    *repoFixture
	devs                 []*fleetDevice
	rollout              string
	itMary, itNorth, rel api.TokenCreated
	auditor              api.TokenCreated
}

const hostile = `<script>alert("x")</script> '"&`

func newConsoleWorld(t *testing.T, f *repoFixture) *consoleWorld {
	dir := vigilancetest.Dir(t)
	w := &consoleWorld{f: f}
	w.devs = newFleetOf(t, f, 4)
	notes := filepath.Join(f.tmp, "notes.txt")
	os.WriteFile(notes, []byte("Fixes Heartbleed. "+hostile), 0o600)
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.0", "--file", appImage(t, f.tmp, "1.0.0", true, 0), "--hardware", "rev-b",
		"--sbom", filepath.Join(dir, "sbom", "demo-pump-1.0.0.cdx.json"))
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", appImage(t, f.tmp, "1.1.0", true, 0), "--hardware", "rev-b",
		"--severity", "security", "--notes", notes, "--sbom", filepath.Join(dir, "sbom", "demo-pump-1.1.0.cdx.json"))
	f.importFeeds(t, testFeeds(t))
	// A device of another product whose care area is hostile text.
	f.manage(t, "POST", api.RouteDevices, []map[string]any{{"id": "MONITOR-1", "product": "other-monitor", "hardware": "m1", "site": "st-mary",
		"care_area": hostile, "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "installed_version": "2.0.0"}})
	w.rollout = f.createRollout(t, "--release", "demo-pump@1.1.0", "--select", "product=demo-pump,hardware=rev-b,version<1.1.0",
		"--waves", "all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=3")
	w.itMary = f.token(t, "--name", "it-st-mary", "--role", "site-it", "--sites", "st-mary")
	w.itNorth = f.token(t, "--name", "it-north", "--role", "site-it", "--sites", "north")
	w.rel = f.token(t, "--name", "release-eng", "--role", "release")
	w.auditor = f.token(t, "--name", "auditor", "--role", "auditor")
	return w
}

func (w *consoleWorld) installed(t *testing.T, site string) int {
	n := 0
	for _, d := range w.devs {
		if d.site == site && d.status(t).Installed == "1.1.0" {
			n++
		}
	}
	return n
}

func testConsole(t *testing.T, f *repoFixture, screenshots bool) {
	w := newConsoleWorld(t, f)
	if !screenshots {
		t.Setenv(EnvScreenshots, "")
	}
	mary := newBrowser(t, f.srv.URL)
	mary.visit("/console/waiting")
	if !strings.Contains(mary.location(), "/console/sign-in") {
		t.Fatalf("an anonymous visit was not sent to sign in: %s", mary.location())
	}
	mary.shot("sign-in")
	mary.signIn(w.itMary.Secret)

	// Hospital IT at st-mary: the wave waits for st-mary only, with what it fixes and changes.
	page := mary.text("main")
	for _, want := range []string{"demo-pump@1.1.0", "st-mary", "CVE-2014-0160", "known exploited", "openssl 1.0.1f → 1.0.1u", hostile} {
		if !strings.Contains(page, want) {
			t.Fatalf("waiting page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "north") {
		t.Fatalf("st-mary's IT sees north:\n%s", page)
	}
	if n := eval[int](mary, `document.querySelectorAll("script").length`); n != 1 {
		t.Fatalf("hostile release notes became %d script elements", n)
	}
	mary.shot("waiting")
	mary.do(chromedp.SendKeys(chromedp.CSS(`form[action$="/approve"] input[name=comment]`), "CHG-2026-1142 "+hostile),
		chromedp.Submit(chromedp.CSS(`form[action$="/approve"] input[name=comment]`)), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	if !strings.Contains(mary.text(".flash.ok"), "Approved") || !strings.Contains(mary.location(), "/console/rollouts/"+w.rollout) {
		t.Fatalf("after approving: %s %s", mary.location(), mary.text("main"))
	}

	// The release engineer watches the rollout; agents at st-mary get and commit it, north's do not.
	rel := newBrowser(t, f.srv.URL)
	rel.signIn(w.rel.Secret)
	rel.visit("/console/rollouts/" + w.rollout)
	if got := rel.liveText("#progress .summary"); !strings.Contains(got, "0 of 4 committed") {
		t.Fatalf("progress before any install: %s", got)
	}
	for range maxRounds {
		round(t, w.devs)
		if w.installed(t, "st-mary") == 2 {
			break
		}
	}
	if w.installed(t, "st-mary") != 2 || w.installed(t, "north") != 0 {
		t.Fatalf("installs: st-mary %d, north %d", w.installed(t, "st-mary"), w.installed(t, "north"))
	}
	// The page updates itself (its script polls the progress fragment).
	waitFor(t, "the rollout page shows the progress move", 30*time.Second, func() bool {
		return strings.Contains(rel.liveText("#progress .summary"), "2 of 4 committed")
	})
	rel.shot("rollout")

	testConsoleScoping(t, w, mary)
	testConsolePages(t, w, rel)
	testConsoleSessionsEnd(t, w, mary, rel)
}

// testConsoleScoping: north's IT reaches nothing of st-mary by editing
// URLs or forging forms; a form without the session's CSRF token fails.
func testConsoleScoping(t *testing.T, w *consoleWorld, mary *browser) {
	north := newBrowser(t, w.f.srv.URL)
	north.signIn(w.itNorth.Secret)
	if page := north.text("main"); !strings.Contains(page, "north") || strings.Contains(page, "st-mary") {
		t.Fatalf("north's waiting page:\n%s", page)
	}
	for _, path := range []string{"/console/sites/st-mary", "/console/devices?site=st-mary"} {
		north.visit(path)
		page := north.html()
		if !strings.Contains(page, "refused (40") || strings.Contains(page, "PUMP-0000") || strings.Contains(page, "PUMP-0002") {
			t.Fatalf("north's IT at %s:\n%s", path, page)
		}
	}
	north.visit("/console/devices")
	if page := north.text("main"); strings.Contains(page, "st-mary") || !strings.Contains(page, "PUMP-0001") {
		t.Fatalf("north's devices page:\n%s", page)
	}
	csrf := eval[string](north, `document.querySelector("input[name=csrf]").value`)
	if code := postFrom(north, "/console/rollouts/"+w.rollout+"/approve", "csrf="+csrf+"&wave=all&site=st-mary&comment=sneaky"); code != 403 {
		t.Fatalf("north approving for st-mary: %d", code)
	}
	if code := postFrom(north, "/console/rollouts/"+w.rollout+"/approve", "wave=all&site=north&comment=no+token"); code != 403 {
		t.Fatalf("a form without a CSRF token: %d", code)
	}
	if code := postFrom(north, "/console/rollouts/"+w.rollout+"/approve", "csrf=0000&wave=all&site=north&comment=wrong+token"); code != 403 {
		t.Fatalf("a form with a wrong CSRF token: %d", code)
	}
	if code := postFrom(north, "/console/sites/north", "csrf="+csrf+"&time_zone=Mars%2FOlympus"); code != 400 {
		t.Fatalf("a bad time zone: %d", code)
	}
	// Without JavaScript the core action still works: approve with the form.
	if _, err := chromedp.Call(north.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	north.visit("/console/waiting")
	north.do(chromedp.SendKeys(chromedp.CSS(`form[action$="/approve"] input[name=comment]`), "CHG-N-7 (no scripts)"),
		chromedp.Submit(chromedp.CSS(`form[action$="/approve"] input[name=comment]`)), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
}

// testConsolePages visits the release engineer's and the auditor's pages.
func testConsolePages(t *testing.T, w *consoleWorld, rel *browser) {
	rel.visit("/console/releases")
	if page := rel.text("main"); !strings.Contains(page, "demo-pump@1.1.0") || !strings.Contains(page, "known exploited") {
		t.Fatalf("releases page:\n%s", page)
	}
	rel.shot("releases")
	rel.visit("/console/findings?release=demo-pump@1.0.0")
	if page := rel.text("main"); !strings.Contains(page, "CVE-2014-0160") || !strings.Contains(page, "demo-pump@1.1.0") {
		t.Fatalf("findings page:\n%s", page)
	}
	rel.shot("findings")
	rel.visit("/console/devices")
	if page := rel.text("main"); !strings.Contains(page, "5 devices") || !strings.Contains(page, "committed") || !strings.Contains(page, hostile) {
		t.Fatalf("devices page:\n%s", page)
	}
	if n := eval[int](rel, `document.querySelectorAll("script").length`); n != 1 {
		t.Fatalf("a hostile care area became %d script elements", n)
	}
	rel.shot("devices")
	rel.visit("/console/sites/st-mary")
	rel.shot("site")
	aud := newBrowser(t, w.f.srv.URL)
	aud.signIn(w.auditor.Secret)
	if !strings.Contains(aud.location(), "/console/audit") {
		t.Fatalf("the auditor starts at %s", aud.location())
	}
	page := aud.text("main")
	if !strings.Contains(page, "Audit chain verified") || !strings.Contains(page, "rollout.approve") || !strings.Contains(page, `CHG-2026-1142 <script>alert(`) {
		t.Fatalf("audit page:\n%s", page)
	}
	if n := eval[int](aud, `document.querySelectorAll("script").length`); n != 1 {
		t.Fatalf("a hostile approval comment became %d script elements", n)
	}
	aud.shot("audit")
}

// testConsoleSessionsEnd: signing out ends the session; revoking a token
// ends its sessions at once.
func testConsoleSessionsEnd(t *testing.T, w *consoleWorld, mary, rel *browser) {
	mary.do(chromedp.Click(chromedp.CSS(`form[action="/console/sign-out"] button`)), chromedp.WaitVisible(chromedp.ID("token")))
	mary.visit("/console/waiting")
	if !strings.Contains(mary.location(), "/console/sign-in") {
		t.Fatalf("after signing out: %s", mary.location())
	}
	w.f.api(t, "token", "revoke", w.rel.ID)
	rel.visit("/console/rollouts")
	if !strings.Contains(rel.location(), "/console/sign-in") {
		t.Fatalf("a revoked token's session still works: %s", rel.location())
	}
	log := w.f.api(t, "audit", "export")
	if strings.Count(log, "console.sign_in") < 4 || !strings.Contains(log, "console.sign_out") {
		t.Fatal("sign-ins and sign-outs are not in the audit log")
	}
}

func TestConsoleInARealBrowserOnSQLite(t *testing.T) {
	testConsole(t, newRepo(t, nil), true)
}

func TestConsoleInARealBrowserOnPostgresAndS3(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	gw := testsvc.StartS3(t)
	f := newRepo(t, []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey}, "--database-url", dsn, "--blob-url", gw.URL())
	testConsole(t, f, false)
}
