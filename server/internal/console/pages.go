package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
)

// signInPage shows the sign-in form with a fresh double-submit CSRF token.
func (c *Console) signInPage(g *gin.Context) {
	c.showSignIn(g, http.StatusOK, "")
}

func (c *Console) showSignIn(g *gin.Context, status int, msg string) {
	b := make([]byte, signInTokenLen)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	c.setCookie(g, signInCookie, tok, 600)
	c.render(g, status, "signin.html", page{Title: "Sign in", Error: msg, Data: map[string]string{"Token": tok, "Next": safeNext(g.Query("next"))}})
}

// safeNext keeps a post-sign-in destination inside the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(u.Path, Prefix+"/") || strings.Contains(next, "\\") {
		return PathHome
	}
	return u.RequestURI()
}

func (c *Console) setCookie(g *gin.Context, name, value string, maxAge int) {
	http.SetCookie(g.Writer, &http.Cookie{Name: name, Value: value, Path: Prefix + "/", MaxAge: maxAge, HttpOnly: true, Secure: c.d.Secure, SameSite: http.SameSiteStrictMode})
}

// signIn exchanges a token for a session. A bad token or a stale form is a
// 400 with the form again; nothing about the token is echoed.
func (c *Console) signIn(g *gin.Context) {
	g.Request.Body = http.MaxBytesReader(g.Writer, g.Request.Body, httpapi.MaxFormBytes)
	cookie, _ := g.Cookie(signInCookie)
	form := g.PostForm(httpapi.CSRFField)
	if cookie == "" || subtle.ConstantTimeCompare([]byte(cookie), []byte(form)) != 1 {
		c.showSignIn(g, http.StatusBadRequest, "This sign-in form expired or did not come from this server. Please try again.")
		return
	}
	ss, err := c.d.Sessions.SignIn(g.Request.Context(), strings.TrimSpace(g.PostForm("token")))
	if err != nil {
		if apperr.Is(err, apperr.Unauthorized) {
			_, msg := apperr.Public(err)
			c.showSignIn(g, http.StatusBadRequest, "Sign-in refused: "+msg)
			return
		}
		c.fail(g, err)
		return
	}
	c.setCookie(g, signInCookie, "", -1)
	c.setCookie(g, httpapi.SessionCookie, ss.ID, int(operator.SessionMax.Seconds()))
	g.Redirect(http.StatusSeeOther, safeNext(g.PostForm("next")))
}

func (c *Console) signOut(g *gin.Context) {
	if err := c.d.Sessions.SignOut(g.Request.Context(), httpapi.SessionOf(g)); err != nil {
		c.fail(g, err)
		return
	}
	c.setCookie(g, httpapi.SessionCookie, "", -1)
	g.Redirect(http.StatusSeeOther, PathSignIn)
}

// home sends each role to where its work starts.
func (c *Console) home(g *gin.Context) {
	to := PathRollouts
	switch httpapi.SessionOf(g).Principal.Role {
	case operator.RoleSiteIT:
		to = PathWaiting
	case operator.RoleAuditor:
		to = PathAudit
	}
	g.Redirect(http.StatusSeeOther, to)
}

// waitingWave is one wave waiting for the caller's approval, with what the
// approver needs to decide.
type waitingWave struct {
	Rollout  api.RolloutStatus
	Wave     string
	Sites    []string
	Eligible int
	Release  *release.Custom
	// Running are the versions the caller's devices of the product run,
	// with counts; Diff compares the SBOM of the most common one.
	Running  map[string]int
	DiffFrom string
	Diff     *diffView
	Fixes    []api.FindingDetail
	FixesOK  bool // the release has an SBOM, so its fixes are known
	NoSBOM   bool
}

// waiting lists the waves that wait for the caller's sites: the open wave
// of each active rollout, at the sites that hold its devices and have not
// approved it.
func (c *Console) waiting(g *gin.Context) {
	ctx := g.Request.Context()
	l, err := c.d.Rollouts.List(ctx)
	if err != nil {
		c.fail(g, err)
		return
	}
	pubs, err := c.d.Catalog.Releases(ctx)
	if err != nil {
		c.fail(g, err)
		return
	}
	var out []waitingWave
	for _, r := range l.Rollouts {
		if len(r.WaitingFor) == 0 || r.State != "active" {
			continue
		}
		w, err := c.describeWaiting(g, r, pubs)
		if err != nil {
			c.fail(g, err)
			return
		}
		out = append(out, w)
	}
	c.render(g, http.StatusOK, "waiting.html", page{Title: "Waiting for me", Active: "waiting", Data: out})
}

func (c *Console) describeWaiting(g *gin.Context, r api.RolloutStatus, pubs []release.Published) (waitingWave, error) {
	ctx := g.Request.Context()
	product, version, _ := strings.Cut(r.Release, "@")
	w := waitingWave{Rollout: r, Wave: r.CurrentWave, Sites: r.WaitingFor, Release: customOf(pubs, product, version)}
	for _, ct := range r.Counts {
		if ct.Wave == r.CurrentWave && slices.Contains(r.WaitingFor, ct.Site) {
			w.Eligible += ct.Eligible
		}
	}
	running, err := c.d.Registry.Versions(ctx, product)
	if err != nil {
		return w, err
	}
	w.Running = running
	var from []string
	for v, n := range running {
		if v != version && v != "" {
			from = append(from, v)
			if w.DiffFrom == "" || n > running[w.DiffFrom] || n == running[w.DiffFrom] && v < w.DiffFrom {
				w.DiffFrom = v
			}
		}
	}
	w.Fixes, w.FixesOK, err = c.d.Vigilance.FixedBy(ctx, product, version, from)
	if err != nil {
		return w, err
	}
	w.NoSBOM = !w.FixesOK
	if w.DiffFrom != "" && w.FixesOK {
		w.Diff, err = c.diff(g, product, w.DiffFrom, version)
	}
	return w, err
}

func customOf(pubs []release.Published, product, version string) *release.Custom {
	for _, p := range pubs {
		if p.Product == product && p.Custom.Version == version && p.Custom.Kind == release.KindFull {
			return p.Custom
		}
	}
	return nil
}

// rollouts lists rollouts, newest first.
func (c *Console) rollouts(g *gin.Context) {
	l, err := c.d.Rollouts.List(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	rows := make([]rolloutView, 0, len(l.Rollouts))
	for _, r := range l.Rollouts {
		rows = append(rows, viewOf(r, httpapi.SessionOf(g).Principal))
	}
	c.render(g, http.StatusOK, "rollouts.html", page{Title: "Rollouts", Active: "rollouts", Data: rows})
}

// rolloutView is a rollout's status arranged for the page: totals, and per
// wave the sites' rows with their bars.
type rolloutView struct {
	api.RolloutStatus
	Total   api.WaveCounts
	Waves   []waveView
	CanAct  bool // may approve/defer (hospital IT, admin)
	CanCtl  bool // may pause/resume/abort (release, admin)
	Sites   []string
	Current bool
}

type waveView struct {
	Name  string
	Share int
	Open  bool
	Rows  []api.WaveCounts
	Total api.WaveCounts
}

func viewOf(r api.RolloutStatus, p operator.Principal) rolloutView {
	v := rolloutView{RolloutStatus: r, CanAct: p.Can(operator.PermRolloutReview), CanCtl: p.Can(operator.PermRolloutWrite)}
	open := true
	for _, w := range r.Waves {
		wv := waveView{Name: w.Name, Share: int(w.Share*100 + 0.5), Open: open}
		if w.Name == r.CurrentWave {
			open = false
		}
		for _, ct := range r.Counts {
			if ct.Wave == w.Name {
				wv.Rows = append(wv.Rows, ct)
				wv.Total = addCounts(wv.Total, ct)
			}
		}
		v.Total = addCounts(v.Total, wv.Total)
		v.Waves = append(v.Waves, wv)
	}
	seen := map[string]bool{}
	for _, ct := range r.Counts {
		if !seen[ct.Site] && p.CanSite(ct.Site) {
			seen[ct.Site] = true
			v.Sites = append(v.Sites, ct.Site)
		}
	}
	sort.Strings(v.Sites)
	return v
}

func addCounts(a, b api.WaveCounts) api.WaveCounts {
	a.Eligible += b.Eligible
	a.Assigned += b.Assigned
	a.Installing += b.Installing
	a.Deferred += b.Deferred
	a.Committed += b.Committed
	a.RolledBack += b.RolledBack
	a.Failed += b.Failed
	return a
}

func (c *Console) rolloutView(g *gin.Context) (rolloutView, bool) {
	r, err := c.d.Rollouts.Status(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return rolloutView{}, false
	}
	return viewOf(r, httpapi.SessionOf(g).Principal), true
}

// rollout shows one rollout's progress and, to those who may, its forms.
func (c *Console) rollout(g *gin.Context) {
	v, ok := c.rolloutView(g)
	if !ok {
		return
	}
	poll := 0
	if v.State == "active" || v.State == "paused" {
		poll = int(ProgressPollInterval.Seconds())
	}
	c.render(g, http.StatusOK, "rollout.html", page{Title: "Rollout " + v.ID, Active: "rollouts", Poll: poll, Data: v})
}

// progress is the rollout page's progress table alone, for live updates.
func (c *Console) progress(g *gin.Context) {
	v, ok := c.rolloutView(g)
	if !ok {
		return
	}
	c.renderPartial(g, "rollout.html", "progress", page{Data: v})
}

// diffView is an SBOM diff between two releases.
type diffView struct {
	From, To string
	vigilance.Diff
}

// diff compares two releases' SBOMs (nil when either has none).
func (c *Console) diff(g *gin.Context, product, from, to string) (*diffView, error) {
	ctx := g.Request.Context()
	a, err := c.d.Vigilance.SBOM(ctx, product, from)
	if apperr.Is(err, apperr.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := c.d.Vigilance.SBOM(ctx, product, to)
	if apperr.Is(err, apperr.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &diffView{From: a.Release, To: b.Release, Diff: vigilance.DiffSBOMs(a.Components, b.Components)}, nil
}
