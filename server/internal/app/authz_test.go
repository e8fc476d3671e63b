package app_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/internal/vigilance/vigilancetest"
	"github.com/vigil-ota/vigil/server/internal/app"
	"github.com/vigil-ota/vigil/server/internal/config"
	"github.com/vigil-ota/vigil/server/internal/console"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
)

// TestEveryRouteAgainstEveryRole is the generated authorization matrix: it
// walks the server's route table and asks every operator route with a token
// of every role (and with none), every console route with a session of
// every role (and with none, and with a wrong CSRF token), every device
// route unsigned, and every public route without anything, and checks each
// answer against what the table declares. A route the table does not
// declare does not exist.
func TestEveryRouteAgainstEveryRole(t *testing.T) {
	srv := openServer(t, "bootstrap-secret")
	h := srv.Handler()
	ctx := context.Background()
	tokens := map[string]string{}
	for _, role := range operator.Roles() {
		in := api.TokenRequest{Name: "matrix-" + role, Role: role}
		if role == operator.RoleSiteIT {
			in.Sites = []string{"st-mary"}
		}
		c, err := srv.Operators().Create(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = c.Secret
	}
	sessions := map[string]operator.Session{}
	signIn := func() {
		for role, tok := range tokens {
			ss, err := srv.Operators().SignIn(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			sessions[role] = ss
		}
	}
	signIn()
	routes := srv.Routes()
	if len(httpapi.Policy(routes)) < 20 {
		t.Fatalf("only %d operator routes in the table", len(httpapi.Policy(routes)))
	}
	fill := strings.NewReplacer(":id", "x", ":name", "st-mary", ":product", "demo-pump", ":file", "f.img", ":release", "demo-pump@1.0.0", "*path", "1.root.json",
		":kind", "kev", ":vuln", "CVE-2014-0160", ":version", "1.0.0")
	ask := func(method, url, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, url, strings.NewReader("{}"))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	// The only routes without a token or a device signature: the signed
	// repository, security.txt, the disclosure intake, and the console's
	// sign-in page and static files.
	wantPublic := []string{"GET " + api.RouteRepoMetadata, "HEAD " + api.RouteRepoMetadata, "GET " + api.RouteRepoTargets, "HEAD " + api.RouteRepoTargets,
		"GET " + api.RouteSecurityTxt, "POST " + api.RouteCVDReports, "GET " + api.RouteCVDReport, "POST " + api.RouteCVDReportNotes,
		"GET " + console.PathSignIn, "POST " + console.PathSignIn, "GET " + console.PathStatic, "GET " + api.RouteOpenAPI}
	var public []string
	for _, rt := range routes {
		if rt.Access == httpapi.Public {
			public = append(public, rt.Method+" "+rt.Path)
		}
	}
	slices.Sort(public)
	slices.Sort(wantPublic)
	if !slices.Equal(public, wantPublic) {
		t.Errorf("public routes %v, want exactly %v", public, wantPublic)
	}
	for _, rt := range routes {
		url := fill.Replace(rt.Path)
		route := rt.Method + " " + rt.Path
		switch rt.Access {
		case httpapi.Public:
			if w := ask(rt.Method, url, ""); w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
				t.Errorf("public %s: %d", route, w.Code)
			}
			continue
		case httpapi.Device:
			if w := ask(rt.Method, url, tokens[operator.RoleAdmin]); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), api.CodeDeviceUnauthenticated) {
				t.Errorf("device %s with an operator token and no signature: %d %s", route, w.Code, w.Body.String())
			}
			continue
		case httpapi.Session:
			checkSessionRoute(t, h, rt, url, sessions)
			if rt.Path == console.PathSignOut {
				signIn() // every session just signed out
			}
			continue
		}
		if rt.Perm == "" {
			t.Errorf("%s declares no permission", route)
		}
		for _, role := range append(operator.Roles(), "none") {
			w := ask(rt.Method, url, tokens[role])
			allowed := role != "none" && (operator.Principal{Role: role}).Can(rt.Perm)
			switch {
			case role == "none" && w.Code != http.StatusUnauthorized:
				t.Errorf("%s without a token: %d, want 401", route, w.Code)
			case role != "none" && !allowed && w.Code != http.StatusForbidden:
				t.Errorf("%s as %s (lacks %s): %d, want 403", route, role, rt.Perm, w.Code)
			case allowed && (w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden):
				// Site-scoped refusals are allowed only for another site.
				if !(role == operator.RoleSiteIT && strings.Contains(w.Body.String(), "limited to sites")) {
					t.Errorf("%s as %s (holds %s): %d %s", route, role, rt.Perm, w.Code, w.Body.String())
				}
			}
		}
	}
}

func TestSiteITActsOnlyForItsOwnSites(t *testing.T) {
	srv := openServer(t, "")
	c, _ := srv.Operators().Create(context.Background(), api.TokenRequest{Name: "it-st-mary", Role: operator.RoleSiteIT, Sites: []string{"st-mary"}})
	do := func(method, url, body string) (int, string) {
		req := httptest.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.Secret)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if code, body := do("PUT", api.Path(api.RouteSite, "st-mary"), `{"time_zone":"America/Chicago"}`); code != 200 {
		t.Fatalf("own site: %d %s", code, body)
	}
	if code, body := do("PUT", api.Path(api.RouteSite, "north"), `{"time_zone":"America/Chicago"}`); code != 403 || !strings.Contains(body, "limited to sites") {
		t.Fatalf("other site: %d %s", code, body)
	}
	if code, body := do("POST", api.Path(api.RouteApprovals, "ro-x"), `{"wave":"canary","site":"north"}`); code != 403 {
		t.Fatalf("approving for another site: %d %s", code, body)
	}
	if code, _ := do("POST", api.RouteRollouts, `{}`); code != 403 {
		t.Fatalf("site IT created a rollout: %d", code)
	}
	if code, _ := do("POST", api.RouteTokens, `{"name":"x","role":"admin"}`); code != 403 {
		t.Fatalf("site IT minted a token: %d", code)
	}
	// Revoked and expired tokens stop working.
	srv.Operators().Revoke(context.Background(), c.ID)
	if code, _ := do("PUT", api.Path(api.RouteSite, "st-mary"), `{"time_zone":"America/Chicago"}`); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
}

// openServer opens an in-process server on the embedded default in a
// temporary directory (nothing listens until Run).
func openServer(t testing.TB, bootstrapToken string) *app.Server {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen = dir, "127.0.0.1:0"
	cfg.DatabaseURL, cfg.BlobURL = filepath.Join(dir, "vigil.db"), filepath.Join(dir, "blobs")
	cfg.BootstrapToken = bootstrapToken
	srv, err := app.Open(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// Finding 10: the bootstrap token retires itself once an admin token
// exists, and comes back only if no valid admin token is left.
func TestTheBootstrapTokenRetiresOnceAnAdminTokenExists(t *testing.T) {
	srv := openServer(t, "bootstrap-secret")
	do := func(token string) (int, string) {
		req := httptest.NewRequest("GET", api.RouteTokens, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if code, body := do("bootstrap-secret"); code != 200 {
		t.Fatalf("bootstrap before any admin token: %d %s", code, body)
	}
	ctx := context.Background()
	if _, err := srv.Operators().Create(ctx, api.TokenRequest{Name: "release-bot", Role: operator.RoleRelease}); err != nil {
		t.Fatal(err)
	}
	if code, _ := do("bootstrap-secret"); code != 200 {
		t.Fatal("a non-admin token retired the bootstrap token")
	}
	admin, err := srv.Operators().Create(ctx, api.TokenRequest{Name: "alice", Role: operator.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do("bootstrap-secret"); code != 401 || !strings.Contains(body, "bootstrap token is retired") {
		t.Fatalf("bootstrap with an admin token present: %d %s", code, body)
	}
	if code, _ := do(admin.Secret); code != 200 {
		t.Fatal("the admin token does not work")
	}
}

// Finding 13: a site's IT gets the same 404 for a device at another site
// as for one that does not exist; a token without "Bearer " is refused.
func TestSiteITCannotProbeForDevicesElsewhereAndTokensNeedTheBearerScheme(t *testing.T) {
	w := newDeviceWorld(t)
	w.admin("PUT", api.Path(api.RouteSite, "north"), `{"time_zone":"America/Chicago"}`, 200)
	it, err := w.srv.Operators().Create(context.Background(), api.TokenRequest{Name: "it-north", Role: operator.RoleSiteIT, Sites: []string{"north"}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, auth string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		w.h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	elsewhere, _ := get(api.Path(api.RouteDeviceEventList, "PUMP-1"), "Bearer "+it.Secret) // PUMP-1 is at st-mary
	missing, _ := get(api.Path(api.RouteDeviceEventList, "PUMP-404"), "Bearer "+it.Secret)
	if elsewhere != 404 || missing != 404 {
		t.Fatalf("another site's device: %d, a missing device: %d; want the same 404", elsewhere, missing)
	}
	if code, _ := get(api.Path(api.RouteDeviceEventList, "PUMP-1"), it.Secret); code != 401 {
		t.Fatalf("a token without the Bearer scheme: %d", code)
	}
	if code, _ := get(api.Path(api.RouteDeviceEventList, "PUMP-1"), "bearer boot"); code != 200 {
		t.Fatalf("the scheme is case-insensitive (RFC 7235): %d", code)
	}
}

// Finding 13: the SQLite file holds token hashes and the audit chain: it is
// readable by its owner only.
func TestTheSQLiteFileIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen = dir, "127.0.0.1:0"
	cfg.DatabaseURL, cfg.BlobURL = filepath.Join(dir, "vigil.db"), filepath.Join(dir, "blobs")
	srv, err := app.Open(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.State.Close()
	st, err := os.Stat(cfg.DatabaseURL)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", cfg.DatabaseURL, st.Mode(), err)
	}
}

// A site's IT sees the devices of its own sites in findings and exposure,
// and cannot ask about another site.
func TestSiteITSeesOnlyItsOwnSitesInFindingsAndExposure(t *testing.T) {
	srv := openServer(t, "boot")
	ctx := context.Background()
	dir := vigilancetest.Dir(t)
	h := srv.Handler()
	do := func(token, method, url, body string) (int, string) {
		req := httptest.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	for i, site := range []string{"st-mary", "north"} {
		do("boot", "PUT", api.Path(api.RouteSite, site), `{"time_zone":"UTC"}`)
		body := fmt.Sprintf(`[{"id":"PUMP-%d","product":"demo-pump","hardware":"rev-b","site":%q,"public_key":"%s","installed_version":"1.0.0"}]`,
			i, site, base64.StdEncoding.EncodeToString(make([]byte, 32)))
		if code, out := do("boot", "POST", api.RouteDevices, body); code != 201 {
			t.Fatal(out)
		}
	}
	f, err := os.Open(filepath.Join(dir, "sbom", "demo-pump-1.0.0.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := sbom.Parse(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := release.Published{Product: "demo-pump", Target: "demo-pump/demo-pump-1.0.0.cdx.json", SHA256: strings.Repeat("b", 64),
		Custom: &release.Custom{Product: "demo-pump", Version: "1.0.0", Kind: release.KindSBOM}}
	if _, err := srv.Vigilance.IndexSBOM(ctx, p, doc); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Vigilance.ImportFeed(ctx, api.FeedNVD, filepath.Join(dir, "nvd")); err != nil {
		t.Fatal(err)
	}
	it, _ := srv.Operators().Create(ctx, api.TokenRequest{Name: "it", Role: operator.RoleSiteIT, Sites: []string{"north"}})
	code, out := do(it.Secret, "GET", api.Path(api.RouteExposure, "CVE-2014-0160"), "")
	if code != 200 || !strings.Contains(out, `"site":"north"`) || strings.Contains(out, "st-mary") || !strings.Contains(out, `"total":1`) {
		t.Fatalf("site-it exposure: %d %s", code, out)
	}
	code, out = do(it.Secret, "GET", api.RouteFindings, "")
	if code != 200 || strings.Contains(out, "st-mary") || !strings.Contains(out, `"devices_total":1`) {
		t.Fatalf("site-it findings: %d %s", code, out)
	}
	if code, _ := do(it.Secret, "GET", api.RouteFindings+"?site=st-mary", ""); code != 403 {
		t.Fatalf("site-it asking about another site: %d", code)
	}
	if code, out := do("boot", "GET", api.Path(api.RouteExposure, "CVE-2014-0160"), ""); code != 200 || !strings.Contains(out, `"total":2`) {
		t.Fatalf("admin exposure: %d %s", code, out)
	}
	if code, _ := do(it.Secret, "POST", api.Path(api.RouteFeedImport, "kev"), "{}"); code != 403 {
		t.Fatalf("site-it imported a feed: %d", code)
	}
}

// checkSessionRoute asks a console route with no session, with a session
// of every role, and (for a form) with a wrong CSRF token.
func checkSessionRoute(t *testing.T, h http.Handler, rt httpapi.Route, url string, sessions map[string]operator.Session) {
	t.Helper()
	route := rt.Method + " " + rt.Path
	post := rt.Method != http.MethodGet && rt.Method != http.MethodHead
	ask := func(ss *operator.Session, csrf string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(rt.Method, url, strings.NewReader("csrf="+csrf))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if ss != nil {
			req.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: ss.ID})
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	switch w := ask(nil, ""); {
	case !post && (w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), httpapi.PathSignIn)):
		t.Errorf("%s without a session: %d %s, want a redirect to sign in", route, w.Code, w.Header().Get("Location"))
	case post && w.Code != http.StatusUnauthorized:
		t.Errorf("%s without a session: %d, want 401", route, w.Code)
	}
	for role, ss := range sessions {
		allowed := ss.Principal.Can(rt.Perm)
		if post && allowed { // before the real request, which may end the session
			if w := ask(&ss, "forged"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "CSRF") {
				t.Errorf("%s as %s with a wrong CSRF token: %d", route, role, w.Code)
			}
		}
		w := ask(&ss, ss.CSRF)
		switch {
		case !allowed && w.Code != http.StatusForbidden:
			t.Errorf("%s as %s (lacks %s): %d, want 403", route, role, rt.Perm, w.Code)
		case allowed && (w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden):
			if !(role == operator.RoleSiteIT && (strings.Contains(w.Body.String(), "limited to sites") || strings.Contains(w.Body.String(), "not one of them"))) {
				t.Errorf("%s as %s (holds %s): %d %s", route, role, rt.Perm, w.Code, w.Body.String())
			}
		}
	}
}
