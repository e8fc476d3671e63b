package vigilance

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Filter selects findings for a listing.
type Filter struct {
	Product string
	Release string // PRODUCT@VERSION
	Site    string
	KEV     bool
	Status  string // open, closed, "" = all
	Limit   int
}

// detailOf is a finding's stored fields around its scan result.
func (s *Service) detailOf(rec state.FindingRecord, f vigilance.Finding) api.FindingDetail {
	f.Status, f.Risk = rec.Status, rec.Risk
	d := api.FindingDetail{Finding: f, ClosedReason: rec.ClosedReason, Aware: rec.Aware, AwareReason: rec.AwareReason, Created: rec.Created,
		Triage: api.Triaged{Risk: rec.Risk, Rationale: rec.Rationale, VEXStatus: rec.VEXStatus, Justification: rec.Justification, Action: rec.Action,
			By: rec.TriagedBy, At: rec.Triaged},
		Devices: []api.SiteCount{}, AffectedReleases: []string{}}
	if rec.Risk == vigilance.RiskUncontrolled {
		d.Clocks = clocksOf(rec, s.now())
	}
	return d
}

// clocksOf computes an uncontrolled finding's clocks at now.
func clocksOf(rec state.FindingRecord, now time.Time) *api.Clocks {
	c := &api.Clocks{NoticeDue: rec.Aware.Add(NoticeWindow), Notified: rec.Notified, FixDue: rec.Aware.Add(FixWindow), FixDeployed: rec.FixDeployed, Overdue: []string{}}
	if rec.Status != vigilance.StatusOpen {
		return c
	}
	if rec.Notified.IsZero() && now.After(c.NoticeDue) {
		c.Overdue = append(c.Overdue, "notice")
	}
	if rec.FixDeployed.IsZero() && now.After(c.FixDue) {
		c.Overdue = append(c.Overdue, "fix")
	}
	return c
}

// productView is what the detail of a product's findings needs, read once.
type productView struct {
	product   string
	counts    []state.InstalledCount
	withSBOM  []string // versions, ascending
	published []string // versions of full images, ascending
	open      []state.FindingRecord
	ids       map[string][]string // finding id → the vulnerability's ids
	progress  map[string][]api.RolloutProgress
}

func (s *Service) productView(ctx context.Context, product string, pubs []release.Published) (*productView, error) {
	v := &productView{product: product, ids: map[string][]string{}, progress: map[string][]api.RolloutProgress{}}
	if s.o.Flush != nil {
		if err := s.o.Flush(ctx); err != nil {
			return nil, err
		}
	}
	var err error
	if v.counts, err = s.st.Registry.InstalledCounts(ctx, product); err != nil {
		return nil, err
	}
	sboms, err := s.st.SBOMs.SBOMs(ctx, product)
	if err != nil {
		return nil, err
	}
	for _, sb := range sboms {
		v.withSBOM = append(v.withSBOM, sb.Version)
	}
	for _, p := range pubs {
		if p.Product == product && p.Custom.Kind == release.KindFull {
			v.published = append(v.published, p.Custom.Version)
		}
	}
	sortVersions(v.withSBOM)
	sortVersions(v.published)
	if v.open, err = s.st.Findings.Findings(ctx, state.FindingFilter{Product: product, Status: vigilance.StatusOpen}); err != nil {
		return nil, err
	}
	for _, f := range v.open {
		var fd vigilance.Finding
		if json.Unmarshal(f.Data, &fd) == nil {
			v.ids[f.ID] = idsOf(fd)
		}
	}
	return v, nil
}

func sortVersions(vs []string) {
	sort.Slice(vs, func(i, j int) bool { return release.Compare(vs[i], vs[j]) < 0 })
}

// idsOf is every name of a finding's vulnerability: its id, CVEs, aliases.
func idsOf(f vigilance.Finding) []string {
	out := append([]string{f.VulnerabilityID}, f.CVEs...)
	return append(out, f.Aliases...)
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// affected returns the versions with an open finding of the vulnerability
// named by ids.
func (v *productView) affected(ids []string) map[string]bool {
	out := map[string]bool{}
	for _, f := range v.open {
		if overlaps(ids, v.ids[f.ID]) {
			out[f.Version] = true
		}
	}
	return out
}

// fixing is the lowest release newer than version with an SBOM and no open
// finding of the vulnerability ("" when there is none).
func (v *productView) fixing(version string, affected map[string]bool) string {
	for _, w := range v.withSBOM {
		if release.Compare(w, version) > 0 && !affected[w] {
			return w
		}
	}
	return ""
}

// remediation counts the product's devices on affected releases (exposed)
// and on releases at or above fixing that do not carry the vulnerability
// (remediated).
func (v *productView) remediation(affected map[string]bool, fixing string) (exposed, remediated int) {
	for _, c := range v.counts {
		switch {
		case affected[c.Version]:
			exposed += c.Count
		case fixing != "" && slices.Contains(v.withSBOM, c.Version) && release.Compare(c.Version, fixing) >= 0:
			remediated += c.Count
		}
	}
	return exposed, remediated
}

// fixDeployed reports whether at least FixDeployedShare of the devices
// that run or ran the vulnerability now run a fixing release.
func fixDeployed(fixing string, exposed, remediated int) bool {
	if fixing == "" {
		return false
	}
	if exposed+remediated == 0 {
		return true
	}
	return float64(remediated) >= FixDeployedShare*float64(exposed+remediated)
}

// withoutSBOM lists the published releases without an SBOM.
func (v *productView) withoutSBOM() []string {
	var out []string
	for _, p := range v.published {
		if !slices.Contains(v.withSBOM, p) {
			out = append(out, v.product+"@"+p)
		}
	}
	return out
}

// complete fills a detail's devices, affected releases, fixing release
// and remediation, scoped to the caller's sites.
func (s *Service) complete(ctx context.Context, d *api.FindingDetail, rec state.FindingRecord, v *productView) {
	scope, scoped := operator.From(ctx)
	for _, c := range v.counts {
		if c.Version == rec.Version && c.Count > 0 && (!scoped || scope.CanSite(c.Site)) {
			d.Devices = append(d.Devices, api.SiteCount{Site: c.Site, Count: c.Count})
			d.DevicesTotal += c.Count
		}
	}
	ids := idsOf(d.Finding)
	affected := v.affected(ids)
	if rec.Status == vigilance.StatusOpen {
		affected[rec.Version] = true
	}
	for ver := range affected {
		d.AffectedReleases = append(d.AffectedReleases, v.product+"@"+ver)
	}
	sort.Slice(d.AffectedReleases, func(i, j int) bool {
		return release.Compare(strings.TrimPrefix(d.AffectedReleases[i], v.product+"@"), strings.TrimPrefix(d.AffectedReleases[j], v.product+"@")) < 0
	})
	fix := v.fixing(rec.Version, affected)
	if fix != "" {
		exposed, remediated := v.remediation(affected, fix)
		d.FixingRelease = &api.FixingRelease{Release: v.product + "@" + fix, Rollouts: s.progressOf(ctx, v, fix), Committed: remediated}
		if d.Clocks != nil {
			d.Clocks.Exposed, d.Clocks.Remediated = exposed, remediated
		}
	} else if d.Clocks != nil {
		d.Clocks.Exposed, _ = v.remediation(affected, "")
	}
}

func (s *Service) progressOf(ctx context.Context, v *productView, version string) []api.RolloutProgress {
	if p, ok := v.progress[version]; ok {
		return p
	}
	out := []api.RolloutProgress{}
	if s.o.Rollouts != nil {
		if p, err := s.o.Rollouts.ProgressOf(ctx, v.product, version); err == nil && p != nil {
			out = p
		}
	}
	v.progress[version] = out
	return out
}

// Findings lists findings with their details.
func (s *Service) Findings(ctx context.Context, f Filter) (api.FindingList, error) {
	out := api.FindingList{Findings: []api.FindingDetail{}, ReleasesWithoutSBOM: []string{}}
	ff := state.FindingFilter{Product: f.Product, Status: f.Status, KEVOnly: f.KEV, Limit: MaxListedFindings}
	if f.Release != "" {
		p, v, ok := strings.Cut(f.Release, "@")
		if !ok || p == "" || v == "" {
			return out, apperr.New(apperr.Invalid, "release %q is not PRODUCT@VERSION", f.Release)
		}
		if f.Product != "" && f.Product != p {
			return out, apperr.New(apperr.Invalid, "release %s is not of product %s", f.Release, f.Product)
		}
		ff.Product, ff.Version = p, v
	}
	if f.Status != "" && f.Status != vigilance.StatusOpen && f.Status != vigilance.StatusClosed {
		return out, apperr.New(apperr.Invalid, "status %q is not open or closed", f.Status)
	}
	if p, ok := operator.From(ctx); ok && f.Site != "" && !p.CanSite(f.Site) {
		return out, apperr.New(apperr.Forbidden, "this token is not scoped to site %q", f.Site)
	}
	recs, err := s.st.Findings.Findings(ctx, ff)
	if err != nil {
		return out, err
	}
	return s.listing(ctx, recs, f, ff.Product)
}

// listing turns records into details, product by product.
func (s *Service) listing(ctx context.Context, recs []state.FindingRecord, f Filter, product string) (api.FindingList, error) {
	out := api.FindingList{Findings: []api.FindingDetail{}, ReleasesWithoutSBOM: []string{}}
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return out, err
	}
	views := map[string]*productView{}
	products := map[string]bool{}
	if product != "" {
		products[product] = true
	}
	for _, rec := range recs {
		v, err := s.viewOf(ctx, views, rec.Product, pubs)
		if err != nil {
			return out, err
		}
		products[rec.Product] = true
		var fd vigilance.Finding
		if err := json.Unmarshal(rec.Data, &fd); err != nil {
			return out, err
		}
		d := s.detailOf(rec, fd)
		s.complete(ctx, &d, rec, v)
		if f.Site != "" && !slices.ContainsFunc(d.Devices, func(c api.SiteCount) bool { return c.Site == f.Site }) {
			continue
		}
		if f.Limit > 0 && len(out.Findings) >= f.Limit {
			break
		}
		out.Findings = append(out.Findings, d)
	}
	if product == "" {
		for _, p := range pubs {
			products[p.Product] = true
		}
	}
	for _, p := range sortedSet(products) {
		v, err := s.viewOf(ctx, views, p, pubs)
		if err != nil {
			return out, err
		}
		out.ReleasesWithoutSBOM = append(out.ReleasesWithoutSBOM, v.withoutSBOM()...)
	}
	return out, nil
}

func (s *Service) viewOf(ctx context.Context, views map[string]*productView, product string, pubs []release.Published) (*productView, error) {
	if v, ok := views[product]; ok {
		return v, nil
	}
	v, err := s.productView(ctx, product, pubs)
	if err != nil {
		return nil, err
	}
	views[product] = v
	return v, nil
}

// Finding returns one finding with its details.
func (s *Service) Finding(ctx context.Context, id string) (api.FindingDetail, error) {
	rec, err := s.st.Findings.Finding(ctx, id)
	if err != nil {
		return api.FindingDetail{}, err
	}
	l, err := s.listing(ctx, []state.FindingRecord{rec}, Filter{}, rec.Product)
	if err != nil {
		return api.FindingDetail{}, err
	}
	return l.Findings[0], nil
}

// Overdue lists the open uncontrolled findings with a clock past due.
func (s *Service) Overdue(ctx context.Context) (api.FindingList, error) {
	recs, err := s.st.Findings.Findings(ctx, state.FindingFilter{Status: vigilance.StatusOpen, Risk: vigilance.RiskUncontrolled})
	if err != nil {
		return api.FindingList{}, err
	}
	now := s.now()
	var due []state.FindingRecord
	for _, r := range recs {
		if len(clocksOf(r, now).Overdue) > 0 {
			due = append(due, r)
		}
	}
	l, err := s.listing(ctx, due, Filter{}, "")
	l.ReleasesWithoutSBOM = []string{}
	return l, err
}

// FixedBy returns the open findings of the product's releases from that
// product@version no longer carries (by any id of the vulnerability): what
// installing it fixes. ok is false when version has no SBOM (nothing can
// be said).
func (s *Service) FixedBy(ctx context.Context, product, version string, from []string) (fixed []api.FindingDetail, ok bool, err error) {
	if _, err := s.st.SBOMs.SBOM(ctx, product, version); apperr.Is(err, apperr.NotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return nil, false, err
	}
	v, err := s.productView(ctx, product, pubs)
	if err != nil {
		return nil, false, err
	}
	var carried []string
	for _, f := range v.open {
		if f.Version == version {
			carried = append(carried, v.ids[f.ID]...)
		}
	}
	fixed = []api.FindingDetail{}
	for _, rec := range v.open {
		if !slices.Contains(from, rec.Version) || overlaps(v.ids[rec.ID], carried) {
			continue
		}
		var fd vigilance.Finding
		if err := json.Unmarshal(rec.Data, &fd); err != nil {
			return nil, false, err
		}
		d := s.detailOf(rec, fd)
		s.complete(ctx, &d, rec, v)
		fixed = append(fixed, d)
	}
	return fixed, true, nil
}
