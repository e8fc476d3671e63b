package console

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

// formTime reads a datetime-local or RFC 3339 form value, in the zone
// named by the form's "zone" field (the site's), or UTC.
func formTime(g *gin.Context, field string) (time.Time, error) {
	v := strings.TrimSpace(g.PostForm(field))
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	loc, err := time.LoadLocation(g.PostForm("zone"))
	if err != nil || g.PostForm("zone") == "" {
		loc = time.UTC
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, apperr.New(apperr.Invalid, "%s %q is not a date and time such as 2026-12-01T02:00", field, v).WithField(field)
}

func (c *Console) approve(g *gin.Context) {
	nb, err := formTime(g, "not_before")
	if err == nil {
		err = c.d.Rollouts.Approve(g.Request.Context(), g.Param("id"), api.Approval{Wave: g.PostForm("wave"), Site: g.PostForm("site"),
			Comment: g.PostForm("comment"), NotBefore: nb})
	}
	c.after(g, err, "approved")
}

func (c *Console) deferWave(g *gin.Context) {
	until, err := formTime(g, "until")
	if err == nil {
		err = c.d.Rollouts.Defer(g.Request.Context(), g.Param("id"), api.Deferral{Wave: g.PostForm("wave"), Site: g.PostForm("site"),
			Reason: g.PostForm("reason"), Until: until})
	}
	c.after(g, err, "deferred")
}

func (c *Console) revoke(g *gin.Context) {
	err := c.d.Rollouts.Approve(g.Request.Context(), g.Param("id"), api.Approval{Wave: g.PostForm("wave"), Site: g.PostForm("site"),
		Comment: g.PostForm("comment"), Revoke: true})
	c.after(g, err, "revoked")
}

func (c *Console) control(g *gin.Context) {
	action := g.PostForm("action")
	if action != fleet.ControlPause && action != fleet.ControlResume && action != fleet.ControlAbort {
		c.fail(g, apperr.New(apperr.Invalid, "action %q is not pause, resume or abort", action))
		return
	}
	if action == fleet.ControlAbort && g.PostForm("confirm") != "yes" {
		c.fail(g, apperr.New(apperr.Invalid, "aborting a rollout cannot be undone: tick the confirmation box").WithField("confirm"))
		return
	}
	_, err := c.d.Rollouts.Control(g.Request.Context(), g.Param("id"), action)
	c.after(g, err, action)
}

// after answers a rollout form: back to the rollout with a confirmation,
// or the rollout page with the error at the top.
func (c *Console) after(g *gin.Context, err error, ok string) {
	to := api.Path(PathRollout, g.Param("id"))
	if err == nil {
		done(g, to, ok)
		return
	}
	v, found := c.rolloutView(g)
	if !found {
		return
	}
	_, msg := apperr.Public(err)
	c.render(g, httpapi.StatusOf(err), "rollout.html", page{Title: "Rollout " + v.ID, Active: "rollouts", Error: msg, Field: apperr.FieldOf(err), Data: v})
}

// devicesView is a page of devices with the filter that chose it.
type devicesView struct {
	Page    api.DevicePage
	Q       fleet.DeviceQuery
	Sites   []api.Site
	Zones   map[string]string
	Prev    string
	Next    string
	Showing string
}

func (c *Console) devices(g *gin.Context) {
	ctx := g.Request.Context()
	offset, _ := strconv.Atoi(g.Query("offset"))
	q := fleet.DeviceQuery{Site: g.Query("site"), CareArea: g.Query("care_area"), Version: g.Query("version"), Prefix: g.Query("q"), Offset: max(offset, 0), Limit: fleet.DefaultDevicePage}
	p, err := c.d.Registry.DevicePage(ctx, q)
	if err != nil {
		c.fail(g, err)
		return
	}
	sites, err := c.d.Registry.Sites(ctx)
	if err != nil {
		c.fail(g, err)
		return
	}
	v := devicesView{Page: p, Q: q, Sites: sites, Zones: map[string]string{}}
	for _, s := range sites {
		v.Zones[s.Name] = s.TimeZone
	}
	link := func(off int) string {
		vals := g.Request.URL.Query()
		vals.Set("offset", strconv.Itoa(off))
		return PathDevices + "?" + vals.Encode()
	}
	if q.Offset > 0 {
		v.Prev = link(max(q.Offset-q.Limit, 0))
	}
	if q.Offset+len(p.Devices) < p.Total {
		v.Next = link(q.Offset + q.Limit)
	}
	c.render(g, http.StatusOK, "devices.html", page{Title: "Devices", Active: "devices", Data: v})
}

func (c *Console) sites(g *gin.Context) {
	sites, err := c.d.Registry.Sites(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "sites.html", page{Title: "Sites", Active: "sites", Data: sites})
}

// siteForm is a site's settings as the form shows them.
type siteForm struct {
	api.Site
	Windows   string
	CareAreas string
	CanEdit   bool
}

func (c *Console) siteNamed(g *gin.Context, name string) (api.Site, bool) {
	sites, err := c.d.Registry.Sites(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return api.Site{}, false
	}
	for _, s := range sites {
		if s.Name == name {
			return s, true
		}
	}
	// One answer for "no such site" and "not yours": nothing leaks.
	c.fail(g, apperr.New(apperr.NotFound, "no site %q among yours", name))
	return api.Site{}, false
}

func (c *Console) site(g *gin.Context) {
	s, ok := c.siteNamed(g, g.Param("name"))
	if !ok {
		return
	}
	c.render(g, http.StatusOK, "site.html", page{Title: "Site " + s.Name, Active: "sites", Data: formOf(s, httpapi.SessionOf(g).Principal)})
}

func formOf(s api.Site, p operator.Principal) siteForm {
	return siteForm{Site: s, Windows: strings.Join(s.Windows, "\n"), CareAreas: strings.Join(s.CareAreas, "\n"), CanEdit: p.Can(operator.PermSiteWrite)}
}

func lines(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// saveSite saves the settings form; a refused value is shown next to its
// field, with what was typed kept.
func (c *Console) saveSite(g *gin.Context) {
	name := g.Param("name")
	if _, ok := c.siteNamed(g, name); !ok {
		return
	}
	in := api.Site{Name: name, TimeZone: strings.TrimSpace(g.PostForm("time_zone")), Windows: lines(g.PostForm("windows")), CareAreas: lines(g.PostForm("care_areas")),
		Policy: strings.TrimSpace(g.PostForm("policy"))}
	var err error
	for _, f := range []struct {
		name string
		to   *int
	}{{"site_cap", &in.SiteCap}, {"care_area_cap", &in.CareAreaCap}} {
		v := strings.TrimSpace(g.PostForm(f.name))
		if v == "" {
			continue
		}
		if *f.to, err = strconv.Atoi(v); err != nil {
			err = apperr.New(apperr.Invalid, "%s %q is not a whole number", f.name, v).WithField(f.name)
			break
		}
	}
	if err == nil {
		err = c.d.Registry.PutSite(g.Request.Context(), in)
	}
	if err == nil {
		done(g, api.Path(PathSite, name), "saved")
		return
	}
	_, msg := apperr.Public(err)
	form := formOf(in, httpapi.SessionOf(g).Principal)
	form.Windows, form.CareAreas = g.PostForm("windows"), g.PostForm("care_areas")
	c.render(g, httpapi.StatusOf(err), "site.html", page{Title: "Site " + name, Active: "sites", Error: msg, Field: apperr.FieldOf(err), Data: form})
}

// releaseRow is one release on the releases page.
type releaseRow struct {
	Product, Version, Severity, Cycle, Notes, Target string
	SBOM                                             bool
	Open, KEV                                        int
}

func (c *Console) releases(g *gin.Context) {
	ctx := g.Request.Context()
	pubs, err := c.d.Catalog.Releases(ctx)
	if err != nil {
		c.fail(g, err)
		return
	}
	l, err := c.d.Vigilance.Findings(ctx, vigilance.Filter{Status: "open"})
	if err != nil {
		c.fail(g, err)
		return
	}
	open, kev := map[string]int{}, map[string]int{}
	for _, f := range l.Findings {
		open[f.Release]++
		if f.KEV {
			kev[f.Release]++
		}
	}
	sboms := map[string]bool{}
	for _, p := range pubs {
		if p.Custom.Kind == "sbom" {
			sboms[p.Release()] = true
		}
	}
	var rows []releaseRow
	for _, p := range pubs {
		if p.Custom.Kind != "full" {
			continue
		}
		r := p.Release()
		rows = append(rows, releaseRow{Product: p.Product, Version: p.Custom.Version, Severity: p.Custom.Severity, Cycle: p.Custom.Cycle, Notes: p.Custom.Notes,
			Target: p.Target, SBOM: sboms[r], Open: open[r], KEV: kev[r]})
	}
	data := map[string]any{"Rows": rows, "CanHalt": httpapi.SessionOf(g).Principal.Can(operator.PermRolloutWrite)}
	c.render(g, http.StatusOK, "releases.html", page{Title: "Releases", Active: "releases", Data: data})
}

func (c *Console) halt(g *gin.Context) {
	rel := g.Param("release")
	_, err := c.d.Rollouts.HaltRelease(g.Request.Context(), rel, g.PostForm("reason"))
	if err != nil {
		c.fail(g, err)
		return
	}
	done(g, PathReleases, "halted")
}

func (c *Console) findings(g *gin.Context) {
	f := vigilance.Filter{Release: g.Query("release"), Product: g.Query("product"), Site: g.Query("site"), KEV: g.Query("kev") == "on", Status: g.DefaultQuery("status", "open")}
	if f.Status == "all" {
		f.Status = ""
	}
	l, err := c.d.Vigilance.Findings(g.Request.Context(), f)
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "findings.html", page{Title: "Findings", Active: "findings", Data: map[string]any{"List": l, "F": f}})
}

// auditView is one page of the audit log with the chain's verification.
type auditView struct {
	Entries  []audit.Entry
	Verified string
	Broken   string
	Filter   string
	Next     string
	Count    int
}

func (c *Console) auditPage(g *gin.Context) {
	ctx := g.Request.Context()
	all, err := c.d.Audit.AuditEntries(ctx, 0, time.Time{}, MaxAuditVerify)
	if err != nil {
		c.fail(g, err)
		return
	}
	v := auditView{Filter: g.Query("filter"), Count: len(all)}
	if err := audit.Verify(all, audit.GenesisHash, 0); err != nil {
		v.Broken = err.Error()
	} else if len(all) > 0 {
		v.Verified = all[len(all)-1].Hash
	}
	after, _ := strconv.ParseInt(g.Query("after"), 10, 64)
	for i := len(all) - 1; i >= 0 && len(v.Entries) < AuditPage; i-- {
		e := all[i]
		if after > 0 && e.Seq >= after {
			continue
		}
		if v.Filter != "" && !strings.Contains(strings.ToLower(e.Action+" "+e.Actor+" "+e.Subject+" "+string(e.Details)), strings.ToLower(v.Filter)) {
			continue
		}
		v.Entries = append(v.Entries, e)
	}
	if len(v.Entries) == AuditPage {
		vals := g.Request.URL.Query()
		vals.Set("after", strconv.FormatInt(v.Entries[len(v.Entries)-1].Seq, 10))
		v.Next = PathAudit + "?" + vals.Encode()
	}
	c.render(g, http.StatusOK, "audit.html", page{Title: "Audit log", Active: "audit", Data: v})
}

// auditExport downloads the whole log as JSON lines (what `vigil audit
// export` writes).
func (c *Console) auditExport(g *gin.Context) {
	all, err := c.d.Audit.AuditEntries(g.Request.Context(), 0, time.Time{}, MaxAuditVerify)
	if err != nil {
		c.fail(g, err)
		return
	}
	g.Header("Content-Type", "application/x-ndjson")
	g.Header("Content-Disposition", `attachment; filename="vigil-audit.jsonl"`)
	enc := json.NewEncoder(g.Writer)
	for _, e := range all {
		if err := enc.Encode(e); err != nil {
			return
		}
	}
}

func (c *Console) notices(g *gin.Context) {
	c.render(g, http.StatusOK, "notices.html", page{Title: "Notices", Active: "notices"})
}
