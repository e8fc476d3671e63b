package vigilance

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Index key kinds.
const (
	keyPackage = "pkg"
	keyProduct = "cpe"
)

// Reasons a finding closes.
const (
	ClosedWithdrawn  = "withdrawn"         // the OSV record was withdrawn
	ClosedRejected   = "rejected"          // the NVD record was rejected
	ClosedNoMatch    = "no_longer_matches" // the record or the SBOM changed
	ClosedSBOMChange = "sbom_replaced"
)

func componentKeys(c vigilance.Component) []state.IndexKey {
	var out []state.IndexKey
	if k, _, ok := c.Package(); ok {
		out = append(out, state.IndexKey{Kind: keyPackage, K1: k.Ecosystem, K2: k.Package})
	}
	if k, _, ok := c.Product(); ok {
		out = append(out, state.IndexKey{Kind: keyProduct, K1: k.Vendor, K2: k.Product})
	}
	return out
}

func recordKeys(r *vigilance.Record) []state.IndexKey {
	pkgs, products := r.Keys()
	out := make([]state.IndexKey, 0, len(pkgs)+len(products))
	for _, k := range pkgs {
		out = append(out, state.IndexKey{Kind: keyPackage, K1: k.Ecosystem, K2: k.Package})
	}
	for _, k := range products {
		out = append(out, state.IndexKey{Kind: keyProduct, K1: k.Vendor, K2: k.Product})
	}
	return out
}

func toComponent(c state.SBOMComponent) vigilance.Component {
	return vigilance.Component{BOMRef: c.BOMRef, Name: c.Name, Version: c.CompVersion, PURL: c.PURL, CPE: c.CPE}
}

func decodeRecord(r state.VulnRecord) (*vigilance.Record, error) {
	var rec vigilance.Record
	if err := json.Unmarshal(r.Data, &rec); err != nil {
		return nil, fmt.Errorf("stored record %s/%s: %w", r.Source, r.ID, err)
	}
	return &rec, nil
}

// kevLookup returns the KEV catalog as a lookup, cached for kevCacheTTL.
func (s *Service) kevLookup(ctx context.Context) (vigilance.KEVLookup, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kev == nil || s.now().After(s.kevUntil) {
		ver, entries, err := s.st.Vulns.KEV(ctx)
		if err != nil {
			return nil, "", err
		}
		s.kev, s.kevVer, s.kevUntil = entries, ver, s.now().Add(kevCacheTTL)
	}
	entries := s.kev
	return func(cve string) (vigilance.KEVEntry, bool) {
		b, ok := entries[cve]
		if !ok {
			return vigilance.KEVEntry{}, false
		}
		var e vigilance.KEVEntry
		return e, json.Unmarshal(b, &e) == nil
	}, s.kevVer, nil
}

func (s *Service) dropKEVCache() {
	s.mu.Lock()
	s.kev = nil
	s.mu.Unlock()
}

// matcher is what one rescan matches against: the stored records that
// share a key with the components, and the KEV catalog.
type matcher struct {
	ix        *vigilance.Index
	kev       vigilance.KEVLookup
	withdrawn map[string]string // record id → close reason
}

// matcherFor loads the records indexed by any of keys, plus the NVD
// records of their CVEs (for CVSS scores of OSV findings).
func (s *Service) matcherFor(ctx context.Context, keys []state.IndexKey) (*matcher, error) {
	kev, _, err := s.kevLookup(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := s.st.Vulns.RecordsByKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	m := &matcher{ix: vigilance.NewIndex(), kev: kev, withdrawn: map[string]string{}}
	cves := map[string]bool{}
	have := map[string]bool{}
	for _, sr := range stored {
		r, err := decodeRecord(sr)
		if err != nil {
			return nil, err
		}
		have[r.Source+"/"+r.ID] = true
		if r.Withdrawn {
			m.withdrawn[r.ID] = closeReason(r)
			continue
		}
		m.ix.Add(r)
		if r.Source == vigilance.SourceOSV {
			for _, c := range r.CVEs() {
				cves[c] = true
			}
		}
	}
	for _, cve := range sortedSet(cves) {
		if have[vigilance.SourceNVD+"/"+cve] {
			continue
		}
		rs, err := s.st.Vulns.RecordsByAlias(ctx, cve)
		if err != nil {
			return nil, err
		}
		for _, sr := range rs {
			if sr.Source != vigilance.SourceNVD || sr.ID != cve || sr.Withdrawn {
				continue
			}
			r, err := decodeRecord(sr)
			if err != nil {
				return nil, err
			}
			m.ix.AddForCVSS(r)
		}
	}
	return m, nil
}

func closeReason(r *vigilance.Record) string {
	if r.Source == vigilance.SourceNVD {
		return ClosedRejected
	}
	return ClosedWithdrawn
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rescan matches components (of any releases) against the stored records
// and brings their findings up to date: a new match opens a finding (an
// alert when devices run the release), a finding that no longer matches
// closes, with the reason. Every change is written in one transaction. It
// returns how many opened and closed.
func (s *Service) rescan(ctx context.Context, comps []state.SBOMComponent) (opened, closed int, err error) {
	if len(comps) == 0 {
		return 0, 0, nil
	}
	var keys []state.IndexKey
	byRelease := map[[2]string][]vigilance.Component{}
	for _, c := range comps {
		keys = append(keys, c.Keys...)
		k := [2]string{c.Product, c.Version}
		byRelease[k] = append(byRelease[k], toComponent(c))
	}
	m, err := s.matcherFor(ctx, keys)
	if err != nil {
		return 0, 0, err
	}
	rels := make([][2]string, 0, len(byRelease))
	for k := range byRelease {
		rels = append(rels, k)
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i][0]+"@"+rels[i][1] < rels[j][0]+"@"+rels[j][1] })
	var plan []change
	for _, rel := range rels {
		p, err := s.planScan(ctx, rel[0], rel[1], byRelease[rel], m)
		if err != nil {
			return 0, 0, err
		}
		plan = append(plan, p...)
	}
	return s.apply(ctx, plan)
}

// change is one finding write a scan decided.
type change struct {
	rec     state.FindingRecord
	finding vigilance.Finding
	wasOpen bool // the finding existed and was open
}

// planScan scans one release's given components and returns the finding
// writes: new or changed matches, and open findings on the scanned
// components that no longer match.
func (s *Service) planScan(ctx context.Context, product, version string, comps []vigilance.Component, m *matcher) ([]change, error) {
	found := vigilance.Scan(product+"@"+version, comps, m.ix, m.kev)
	existing, err := s.st.Findings.Findings(ctx, state.FindingFilter{Product: product, Version: version})
	if err != nil {
		return nil, err
	}
	old := map[string]state.FindingRecord{}
	for _, f := range existing {
		old[f.ID] = f
	}
	now := s.now()
	var plan []change
	for _, f := range found {
		data, _ := json.Marshal(f)
		prev, had := old[f.ID]
		delete(old, f.ID)
		wasOpen := had && prev.Status == vigilance.StatusOpen
		if wasOpen && string(prev.Data) == string(data) {
			continue // unchanged
		}
		plan = append(plan, change{finding: f, wasOpen: wasOpen, rec: state.FindingRecord{ID: f.ID, VulnSource: f.Source, VulnID: f.VulnerabilityID,
			Product: product, Version: version, Data: data, KEV: f.KEV, Status: vigilance.StatusOpen, Risk: vigilance.RiskUntriaged, Aware: now, Created: now, Updated: now}})
	}
	scanned := map[string]bool{}
	for _, c := range comps {
		scanned[c.BOMRef] = true
	}
	for _, f := range existing {
		if _, gone := old[f.ID]; !gone || f.Status != vigilance.StatusOpen {
			continue
		}
		var was vigilance.Finding
		if json.Unmarshal(f.Data, &was) != nil || !scanned[was.Component.BOMRef] {
			continue // a component this scan did not look at
		}
		reason := ClosedNoMatch
		if r, ok := m.withdrawn[f.VulnID]; ok {
			reason = r
		}
		f.Status, f.ClosedReason, f.Closed, f.Updated = vigilance.StatusClosed, reason, now, now
		plan = append(plan, change{rec: f, wasOpen: true})
	}
	return plan, nil
}

// apply writes a scan's changes in one transaction, then raises the alerts
// of the findings that opened.
func (s *Service) apply(ctx context.Context, plan []change) (opened, closed int, err error) {
	recs := make([]state.FindingRecord, len(plan))
	for i, c := range plan {
		recs[i] = c.rec
	}
	isNew, err := s.st.Findings.PutFindings(ctx, recs)
	if err != nil {
		return 0, 0, err
	}
	counts := map[string][]state.InstalledCount{}
	for i, c := range plan {
		switch {
		case c.rec.Status == vigilance.StatusClosed:
			closed++
		case isNew[i] || !c.wasOpen:
			opened++
			if _, err := audit.Record(ctx, s.st.Audit, "finding.open", c.rec.ID, map[string]any{"release": c.rec.Product + "@" + c.rec.Version,
				"vulnerability": c.rec.VulnID, "source": c.rec.VulnSource, "kev": c.rec.KEV}); err != nil {
				return opened, closed, err
			}
			cs, ok := counts[c.rec.Product]
			if !ok {
				if cs, err = s.st.Registry.InstalledCounts(ctx, c.rec.Product); err != nil {
					return opened, closed, err
				}
				counts[c.rec.Product] = cs
			}
			s.alertIfRunning(ctx, c.rec, c.finding, cs)
		}
	}
	return opened, closed, nil
}

// alertIfRunning raises the alert of a new finding on a release devices
// run (a Prometheus counter and, when configured, the webhook).
func (s *Service) alertIfRunning(ctx context.Context, rec state.FindingRecord, f vigilance.Finding, counts []state.InstalledCount) {
	sites, total := sitesRunning(counts, rec.Version)
	if total == 0 {
		return
	}
	if s.o.Metrics != nil {
		s.o.Metrics.alerts.Inc()
	}
	s.o.Log.Warn("new finding on a release devices run", zap.String("finding", rec.ID), zap.String("vulnerability", rec.VulnID),
		zap.String("release", rec.Product+"@"+rec.Version), zap.Int("devices", total), zap.Bool("kev", rec.KEV))
	if s.o.Alerts != nil {
		d := s.detailOf(rec, f)
		d.Devices, d.DevicesTotal = sites, total
		s.o.Alerts.Alert(ctx, Alert{Event: "finding.new", Finding: d, Sites: sites, Devices: total, At: s.now()})
	}
}

func sitesRunning(counts []state.InstalledCount, version string) ([]api.SiteCount, int) {
	out := []api.SiteCount{}
	total := 0
	for _, c := range counts {
		if c.Version == version && c.Count > 0 {
			out = append(out, api.SiteCount{Site: c.Site, Count: c.Count})
			total += c.Count
		}
	}
	return out, total
}

// IndexSBOM stores a release's SBOM and its components (replacing an
// earlier one), then matches them.
func (s *Service) IndexSBOM(ctx context.Context, p release.Published, doc *sbom.SBOM) (opened int, err error) {
	rec := state.SBOMRecord{Product: p.Product, Version: p.Custom.Version, Target: p.Target, SHA256: p.SHA256, SpecVersion: doc.SpecVersion, Indexed: s.now()}
	for _, c := range doc.Components {
		rec.Components = append(rec.Components, state.SBOMComponent{Product: p.Product, Version: p.Custom.Version, BOMRef: c.BOMRef, Name: c.Name,
			CompVersion: c.Version, PURL: c.PURL, CPE: c.CPE, Keys: componentKeys(c)})
	}
	if err := s.st.SBOMs.PutSBOM(ctx, rec); err != nil {
		return 0, err
	}
	opened, _, err = s.rescan(ctx, rec.Components)
	return opened, err
}

// SyncSBOMs indexes every published SBOM not indexed yet (or whose target
// changed): after a publish on any replica, and at start. It returns the
// releases it indexed.
func (s *Service) SyncSBOMs(ctx context.Context) ([]string, error) {
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return nil, err
	}
	have, err := s.st.SBOMs.SBOMs(ctx, "")
	if err != nil {
		return nil, err
	}
	indexed := map[string]string{}
	for _, h := range have {
		indexed[h.Product+"@"+h.Version] = h.SHA256
	}
	var done []string
	for _, p := range pubs {
		if p.Custom.Kind != release.KindSBOM || indexed[p.Release()] == p.SHA256 {
			continue
		}
		doc, err := s.readSBOM(ctx, p)
		if err != nil {
			s.o.Log.Error("a published SBOM cannot be indexed", zap.String("target", p.Target), zap.Error(err))
			continue
		}
		if _, err := s.IndexSBOM(ctx, p, doc); err != nil {
			return done, err
		}
		done = append(done, p.Release())
	}
	return done, nil
}

func (s *Service) readSBOM(ctx context.Context, p release.Published) (*sbom.SBOM, error) {
	rc, err := s.cat.OpenTarget(ctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	doc, err := sbom.Parse(rc)
	if err != nil {
		return nil, err
	}
	return doc, doc.Describes(p.Product, p.Custom.Version)
}

// CheckNewRelease is the publish gate (tufrepo.SBOMGate): it scans the new
// release's SBOM against the stored feeds and refuses it while it carries
// a KEV-listed vulnerability that accept does not name; every accepted id
// must be one the release carries.
func (s *Service) CheckNewRelease(ctx context.Context, product, version string, doc *sbom.SBOM, accept []api.AcceptedVulnerability) error {
	findings, err := s.Scan(ctx, product+"@"+version, doc.Components)
	if err != nil {
		return err
	}
	accepted := map[string]bool{}
	for _, a := range accept {
		accepted[a.ID] = false
	}
	var refused []string
	for _, f := range findings {
		if !f.KEV {
			continue
		}
		hit := false
		for _, id := range append([]string{f.VulnerabilityID}, f.Aliases...) {
			if _, ok := accepted[id]; ok {
				accepted[id], hit = true, true
			}
		}
		if !hit {
			refused = append(refused, f.VulnerabilityID+" in "+f.Component.Name+" "+f.Component.Version)
		}
	}
	if len(refused) > 0 {
		return apperr.New(apperr.Conflict, "%s@%s still carries %d KEV-listed (known exploited) vulnerabilit%s: %s; fix them, or accept each with --accept-known-vulnerability ID --reason TEXT",
			product, version, len(refused), plural(len(refused), "y", "ies"), strings.Join(refused, "; ")).WithCode(api.CodeKnownExploited)
	}
	for id, used := range accepted {
		if !used {
			return apperr.New(apperr.Invalid, "vulnerability %s is accepted, but %s@%s does not carry it as a KEV-listed vulnerability", id, product, version)
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Scan matches components against the stored feeds without storing
// anything (the publish gate).
func (s *Service) Scan(ctx context.Context, rel string, comps []vigilance.Component) ([]vigilance.Finding, error) {
	var keys []state.IndexKey
	for _, c := range comps {
		keys = append(keys, componentKeys(c)...)
	}
	m, err := s.matcherFor(ctx, keys)
	if err != nil {
		return nil, err
	}
	return vigilance.Scan(rel, comps, m.ix, m.kev), nil
}
