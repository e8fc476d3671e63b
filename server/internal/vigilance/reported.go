package vigilance

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// SourceReported marks findings that come from a confirmed disclosure
// case, not from a feed: the triager names the affected releases.
const SourceReported = "vigil-cvd"

// MaxReportedReleases bounds the releases one reported vulnerability names.
const MaxReportedReleases = 256

// AddReported opens findings for a vulnerability reported to the maker (a
// confirmed disclosure case) on the releases the triager chose: they join
// the findings of the feeds, so exposure, triage and the 30/60-day clocks
// apply. The component is the case itself (its ref never appears in an
// SBOM, so rescans leave these findings alone). It returns the finding ids.
func (s *Service) AddReported(ctx context.Context, vulnID, caseID, summary string, kev bool, releases []string) ([]string, error) {
	if err := input.Required("vulnerability", vulnID, input.MaxName); err != nil {
		return nil, err
	}
	if err := input.Text("summary", summary, input.MaxComment); err != nil {
		return nil, err
	}
	if len(releases) == 0 || len(releases) > MaxReportedReleases {
		return nil, apperr.New(apperr.Invalid, "name between 1 and %d affected releases (PRODUCT@VERSION)", MaxReportedReleases).WithField("releases")
	}
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return nil, err
	}
	published := map[string]bool{}
	for _, p := range pubs {
		published[p.Release()] = true
	}
	now := s.now()
	comp := vigilance.Component{BOMRef: "vigil-cvd:" + caseID, Name: "reported: " + caseID}
	var recs []state.FindingRecord
	for _, rel := range slices.Compact(slices.Sorted(slices.Values(releases))) {
		if !published[rel] {
			return nil, apperr.New(apperr.Invalid, "release %q is not published (name affected releases as PRODUCT@VERSION)", rel).WithField("releases")
		}
		product, version, _ := strings.Cut(rel, "@") // a published release: PRODUCT@VERSION
		f := vigilance.Finding{ID: vigilance.FindingID(vulnID, rel, comp), VulnerabilityID: vulnID, Source: SourceReported, Aliases: []string{caseID},
			CVEs: []string{}, Summary: summary, KEV: kev, KEVRelated: []string{}, Release: rel, Component: comp,
			Status: vigilance.StatusOpen, Risk: vigilance.RiskUntriaged}
		data, _ := json.Marshal(f)
		recs = append(recs, state.FindingRecord{ID: f.ID, VulnSource: SourceReported, VulnID: vulnID, Product: product, Version: version, Data: data,
			KEV: kev, Status: vigilance.StatusOpen, Risk: vigilance.RiskUntriaged, Aware: now, AwareReason: "reported in disclosure case " + caseID,
			Created: now, Updated: now})
	}
	if _, err := s.st.Findings.PutFindings(ctx, recs); err != nil {
		return nil, err
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
		if _, err := audit.Record(ctx, s.st.Audit, "finding.open", r.ID, map[string]any{"release": r.Product + "@" + r.Version,
			"vulnerability": vulnID, "case": caseID, "kev": kev}); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// NoticeSent records that customers were notified of a finding at t: the
// 30-day notice clock of an uncontrolled finding stops (it is audited by
// the caller's notice).
func (s *Service) NoticeSent(ctx context.Context, id string, t time.Time) error {
	rec, err := s.st.Findings.Finding(ctx, id)
	if err != nil {
		return err
	}
	if !rec.Notified.IsZero() {
		return nil
	}
	rec.Notified, rec.Updated = t.UTC(), s.now()
	return s.st.Findings.UpdateTriage(ctx, rec)
}
