// Package console is vigil-server's web console under /console/: hospital
// IT approves, defers or revokes rollout waves for its sites and sees its
// devices and site settings; release engineers watch rollouts move and
// halt releases; auditors read the audit log. Pages are server-rendered
// (html/template, assets embedded), readable and usable without
// JavaScript; a small embedded script only adds live progress and local
// times.
//
// Threat model: the console is as safe as the API because it is the API's
// policy: its routes are entries of the one route table (httpapi.Route
// with Access Session and a permission), and its handlers call the same
// domain services, so role checks and site scoping are the services' own.
// An operator token is exchanged once for a server-side session (cookie
// HttpOnly, SameSite=Strict, Secure over TLS; idle and absolute expiry;
// dead as soon as its token is revoked or expires). Every form carries the
// session's CSRF token (the sign-in form a double-submit cookie). Every
// string shown (device ids, site names, comments, report text) is escaped
// by html/template; nothing is built as HTML by hand. Responses forbid
// framing and inline scripts (Content-Security-Policy).
//
// Concurrency: the console holds no state of its own; templates are parsed
// once at start.
package console

import (
	"context"
	"embed"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Paths.
const (
	Prefix         = "/console"
	PathHome       = Prefix + "/"
	PathSignIn     = httpapi.PathSignIn
	PathSignOut    = Prefix + "/sign-out"
	PathStatic     = Prefix + "/static/*file"
	PathWaiting    = Prefix + "/waiting"
	PathRollouts   = Prefix + "/rollouts"
	PathRollout    = Prefix + "/rollouts/:id"
	PathProgress   = Prefix + "/rollouts/:id/progress"
	PathApprove    = Prefix + "/rollouts/:id/approve"
	PathDefer      = Prefix + "/rollouts/:id/defer"
	PathRevoke     = Prefix + "/rollouts/:id/revoke"
	PathControl    = Prefix + "/rollouts/:id/control"
	PathDevices    = Prefix + "/devices"
	PathSites      = Prefix + "/sites"
	PathSite       = Prefix + "/sites/:name"
	PathReleases   = Prefix + "/releases"
	PathHalt       = Prefix + "/releases/:release/halt"
	PathFindings   = Prefix + "/findings"
	PathAudit      = Prefix + "/audit"
	PathAuditFile  = Prefix + "/audit/export"
	PathNotices    = Prefix + "/notices"
	signInCookie   = "vigil_signin"
	signInTokenLen = 32
)

// Limits and intervals, with their units.
const (
	// ProgressPollInterval is how often the rollout page's script asks for
	// fresh progress.
	ProgressPollInterval = 3 * time.Second
	// AuditPage is how many audit entries one page shows.
	AuditPage = 100
	// MaxAuditVerify bounds the entries the audit page verifies at the top.
	MaxAuditVerify = 1_000_000
)

// The services the console calls: the same ones the API calls.
type (
	// Rollouts is fleet.Rollouts.
	Rollouts interface {
		List(ctx context.Context) (api.RolloutList, error)
		Status(ctx context.Context, id string) (api.RolloutStatus, error)
		Control(ctx context.Context, id, action string) (api.RolloutState, error)
		Approve(ctx context.Context, id string, in api.Approval) error
		Defer(ctx context.Context, id string, in api.Deferral) error
		HaltRelease(ctx context.Context, rel, reason string) ([]string, error)
	}
	// Registry is fleet.Registry.
	Registry interface {
		DevicePage(ctx context.Context, q fleet.DeviceQuery) (api.DevicePage, error)
		Sites(ctx context.Context) ([]api.Site, error)
		PutSite(ctx context.Context, in api.Site) error
		Versions(ctx context.Context, product string) (map[string]int, error)
	}
	// Vigilance is vigilance.Service.
	Vigilance interface {
		Findings(ctx context.Context, f vigilance.Filter) (api.FindingList, error)
		SBOM(ctx context.Context, product, version string) (api.SBOM, error)
		FixedBy(ctx context.Context, product, version string, from []string) ([]api.FindingDetail, bool, error)
	}
	// Catalog lists published releases (tufrepo.Repo).
	Catalog interface {
		Releases(ctx context.Context) ([]release.Published, error)
	}
	// AuditLog reads the audit chain (the state store).
	AuditLog interface {
		AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
	}
	// Sessions signs operators in and out (operator.Service).
	Sessions interface {
		SignIn(ctx context.Context, bearer string) (operator.Session, error)
		SignOut(ctx context.Context, ss operator.Session) error
	}
)

// Deps are the console's services and settings.
type Deps struct {
	Rollouts  Rollouts
	Registry  Registry
	Vigilance Vigilance
	Catalog   Catalog
	Audit     AuditLog
	Sessions  Sessions
	// Secure marks cookies Secure (the server serves TLS).
	Secure bool
	Now    func() time.Time
}

// Console serves the pages.
type Console struct {
	d     Deps
	pages map[string]*template.Template
}

// New parses the templates (once) and returns the console.
func New(d Deps) (*Console, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &Console{d: d, pages: pages}, nil
}

// Routes are the console's entries of the route table.
func (c *Console) Routes() []httpapi.Route {
	pub := func(method, path string, h gin.HandlerFunc) httpapi.Route {
		return httpapi.Route{Method: method, Path: path, Access: httpapi.Public, Handle: secured(h)}
	}
	sess := func(method, path string, perm operator.Permission, h gin.HandlerFunc) httpapi.Route {
		return httpapi.Route{Method: method, Path: path, Access: httpapi.Session, Perm: perm, Handle: secured(h)}
	}
	return []httpapi.Route{
		pub(http.MethodGet, PathSignIn, c.signInPage),
		pub(http.MethodPost, PathSignIn, c.signIn),
		pub(http.MethodGet, PathStatic, c.static),
		sess(http.MethodGet, PathHome, operator.PermRead, c.home),
		sess(http.MethodPost, PathSignOut, operator.PermRead, c.signOut),
		sess(http.MethodGet, PathWaiting, operator.PermRead, c.waiting),
		sess(http.MethodGet, PathRollouts, operator.PermRead, c.rollouts),
		sess(http.MethodGet, PathRollout, operator.PermRead, c.rollout),
		sess(http.MethodGet, PathProgress, operator.PermRead, c.progress),
		sess(http.MethodPost, PathApprove, operator.PermRolloutReview, c.approve),
		sess(http.MethodPost, PathDefer, operator.PermRolloutReview, c.deferWave),
		sess(http.MethodPost, PathRevoke, operator.PermRolloutReview, c.revoke),
		sess(http.MethodPost, PathControl, operator.PermRolloutWrite, c.control),
		sess(http.MethodGet, PathDevices, operator.PermRead, c.devices),
		sess(http.MethodGet, PathSites, operator.PermRead, c.sites),
		sess(http.MethodGet, PathSite, operator.PermRead, c.site),
		sess(http.MethodPost, PathSite, operator.PermSiteWrite, c.saveSite),
		sess(http.MethodGet, PathReleases, operator.PermRead, c.releases),
		sess(http.MethodPost, PathHalt, operator.PermRolloutWrite, c.halt),
		sess(http.MethodGet, PathFindings, operator.PermRead, c.findings),
		sess(http.MethodGet, PathAudit, operator.PermAuditRead, c.auditPage),
		sess(http.MethodGet, PathAuditFile, operator.PermAuditRead, c.auditExport),
		sess(http.MethodGet, PathNotices, operator.PermRead, c.notices),
	}
}

// secured adds the headers every console response carries: no framing, no
// inline or foreign scripts, no caching of pages that show records.
func secured(h gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		hdr := c.Writer.Header()
		hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "same-origin")
		if c.Request.URL.Path != "" && c.FullPath() != PathStatic {
			hdr.Set("Cache-Control", "no-store")
		}
		h(c)
	}
}

// Refuse renders a refused console request as a page (httpapi's
// SessionRefusal).
func (c *Console) Refuse(g *gin.Context, status int, err error) {
	c.renderError(g, status, err)
}

func (c *Console) static(g *gin.Context) {
	sub, _ := fs.Sub(staticFS, "static")
	name := g.Param("file")
	f, err := sub.Open(name[1:])
	if err != nil {
		g.Status(http.StatusNotFound)
		return
	}
	defer f.Close()
	switch {
	case len(name) > 4 && name[len(name)-4:] == ".css":
		g.Header("Content-Type", "text/css; charset=utf-8")
	case len(name) > 3 && name[len(name)-3:] == ".js":
		g.Header("Content-Type", "text/javascript; charset=utf-8")
	}
	g.Header("Cache-Control", "public, max-age=3600")
	g.Status(http.StatusOK)
	io.Copy(g.Writer, f)
}
