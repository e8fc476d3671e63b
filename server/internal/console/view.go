package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
)

// page is what every page's template gets besides its own data.
type page struct {
	Title  string
	Active string // the nav entry to mark
	P      operator.Principal
	CSRF   string
	Nav    []navItem
	OK     string // a confirmation after a change
	Error  string
	Field  string // the form field Error is about
	Poll   int    // seconds between live updates (0: none)
	Data   any
}

type navItem struct{ Key, Label, Href string }

// navFor is the navigation of a role: hospital IT starts with what waits
// for it; release engineers with rollouts; auditors with the audit log.
func navFor(p operator.Principal) []navItem {
	all := map[string]navItem{
		"waiting":  {"waiting", "Waiting for me", PathWaiting},
		"rollouts": {"rollouts", "Rollouts", PathRollouts},
		"devices":  {"devices", "Devices", PathDevices},
		"sites":    {"sites", "Sites", PathSites},
		"releases": {"releases", "Releases", PathReleases},
		"findings": {"findings", "Findings", PathFindings},
		"audit":    {"audit", "Audit log", PathAudit},
		"notices":  {"notices", "Notices", PathNotices},
	}
	var keys []string
	switch p.Role {
	case operator.RoleSiteIT:
		keys = []string{"waiting", "rollouts", "devices", "sites", "notices"}
	case operator.RoleAuditor:
		keys = []string{"audit", "rollouts", "releases", "findings", "devices", "sites"}
	default:
		keys = []string{"rollouts", "releases", "findings", "devices", "sites", "waiting"}
		if p.Can(operator.PermAuditRead) {
			keys = append(keys, "audit")
		}
	}
	out := make([]navItem, 0, len(keys))
	for _, k := range keys {
		out = append(out, all[k])
	}
	return out
}

// confirmations are the messages a redirect after a change may show (by
// key: the page never reflects free text from the URL).
var confirmations = map[string]string{
	"approved": "Approved.", "deferred": "Deferred.", "revoked": "Approval revoked.", "saved": "Settings saved.",
	"pause": "Rollout paused.", "resume": "Rollout resumed.", "abort": "Rollout aborted.", "halted": "Every rollout of the release is halted.",
}

var funcs = template.FuncMap{
	"utc":       func(t time.Time) string { return stamp(t, time.UTC) },
	"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"inzone":    inZone,
	"state":     func(v any) string { return stateWord(fmt.Sprint(v)) },
	"stateicon": func(v any) string { return stateIcon(fmt.Sprint(v)) },
	"pct":       pct,
	"join":      strings.Join,
	"add":       func(a, b int) int { return a + b },
	"sub":       func(a, b int) int { return a - b },
	"zero":      func(t time.Time) bool { return t.IsZero() },
	"path":      api.Path,
	"short":     func(s string, n int) string { return shorten(s, n) },
	"details":   readableJSON,
	"who":       who,
}

// who is an operator's name as people know it: the token's name, not its
// audit form "token:ID:NAME".
func who(name string) string {
	if rest, ok := strings.CutPrefix(name, "token:"); ok {
		if _, n, ok := strings.Cut(rest, ":"); ok {
			return n
		}
	}
	return name
}

// readableJSON shows stored JSON as people wrote it: json.Marshal escapes
// <, > and & as \u003c…, which html/template would escape anyway.
func readableJSON(raw []byte) string {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return string(raw)
	}
	return strings.TrimSpace(buf.String())
}

func stamp(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "never"
	}
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

// inZone shows t in a site's zone (UTC when the zone is unknown).
func inZone(t time.Time, zone string) string {
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "" {
		loc = time.UTC
	}
	return stamp(t, loc)
}

func pct(n, of int) int {
	if of <= 0 {
		return 0
	}
	return n * 100 / of
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// stateWord and stateIcon name a state in words and with a symbol, so a
// status never depends on colour alone.
func stateWord(s string) string {
	switch s {
	case string(api.StateCommitted), "completed":
		return "committed"
	case string(api.StateRolledBack):
		return "rolled back"
	case string(api.StateFailed), "halted", "aborted":
		return s
	case string(api.StateDeferred):
		return "deferred (in use)"
	}
	return strings.ReplaceAll(s, "_", " ")
}

func stateIcon(s string) string {
	switch s {
	case string(api.StateCommitted), "completed", "active", "open", "approved":
		return "✓"
	case string(api.StateRolledBack), string(api.StateFailed), "halted", "aborted", "kev":
		return "✕"
	case string(api.StateDeferred), "paused", "waiting":
		return "‖"
	case string(api.StateIdle), "":
		return "·"
	}
	return "↻"
}

func parseTemplates() (map[string]*template.Template, error) {
	layout, err := fs.ReadFile(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	partials, err := fs.ReadFile(templateFS, "templates/partials.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" || base == "partials.html" {
			continue
		}
		body, err := fs.ReadFile(templateFS, n)
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout.html").Funcs(funcs).Parse(string(layout))
		if err == nil {
			_, err = t.New("partials.html").Parse(string(partials))
		}
		if err == nil {
			_, err = t.New(base).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", base, err)
		}
		out[base] = t
	}
	return out, nil
}

// render writes a page with the layout; a template error is a 500 that
// shows nothing half-rendered.
func (c *Console) render(g *gin.Context, status int, name string, p page) {
	ss := httpapi.SessionOf(g)
	p.P, p.CSRF = ss.Principal, ss.CSRF
	if p.P.Role != "" {
		p.Nav = navFor(p.P)
	}
	if msg, ok := confirmations[g.Query("ok")]; ok && p.OK == "" {
		p.OK = msg
	}
	t, ok := c.pages[name]
	if !ok {
		httpapi.WriteError(g, apperr.New(apperr.Internal, "no template %s", name))
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		err = apperr.Wrap(err, apperr.Internal, "rendering %s", name)
		if name == "error.html" {
			httpapi.WriteError(g, err)
			return
		}
		c.renderError(g, http.StatusInternalServerError, err)
		return
	}
	g.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// renderPartial writes one named template of a page without the layout
// (live updates).
func (c *Console) renderPartial(g *gin.Context, pageName, name string, p page) {
	var buf bytes.Buffer
	if err := c.pages[pageName].ExecuteTemplate(&buf, name, p); err != nil {
		httpapi.WriteError(g, apperr.Wrap(err, apperr.Internal, "rendering %s", name))
		return
	}
	g.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

// renderError shows a refusal or failure as a page with the API's message
// and request id (the detail is in the log).
func (c *Console) renderError(g *gin.Context, status int, err error) {
	code, msg := apperr.Public(err)
	if status >= 500 {
		httpapi.LogError(g, status, err)
	}
	c.render(g, status, "error.html", page{Title: http.StatusText(status), Error: msg, Field: apperr.FieldOf(err),
		Data: map[string]string{"Code": code, "RequestID": httpapi.RequestID(g), "Status": fmt.Sprint(status)}})
}

// fail renders err with the status its kind maps to.
func (c *Console) fail(g *gin.Context, err error) { c.renderError(g, httpapi.StatusOf(err), err) }

// done redirects after a change (303, so a reload does not post again).
func done(g *gin.Context, to, ok string) {
	g.Redirect(http.StatusSeeOther, to+"?ok="+ok)
}
