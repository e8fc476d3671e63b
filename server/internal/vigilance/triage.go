package vigilance

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Justifications an OpenVEX not_affected statement may give (the CycloneDX
// export maps each to an analysis justification).
var Justifications = []string{
	"component_not_present",
	"vulnerable_code_not_present",
	"vulnerable_code_not_in_execute_path",
	"vulnerable_code_cannot_be_controlled_by_adversary",
	"inline_mitigations_already_exist",
}

// VEXStatuses are the statuses a triage may record.
var VEXStatuses = []string{api.VEXNotAffected, api.VEXAffected, api.VEXFixed, api.VEXUnderInvestigation}

// maxClockSkew is how far in the future an awareness or notice time may
// lie (clocks of the operator's machine).
const maxClockSkew = 5 * time.Minute

func checkText(name, v string, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return apperr.New(apperr.Invalid, "%s is required", name)
	case len(v) > MaxRationaleLength:
		return apperr.New(apperr.TooLarge, "%s is %d bytes; the limit is %d", name, len(v), MaxRationaleLength)
	case !utf8.ValidString(v):
		return apperr.New(apperr.Invalid, "%s is not UTF-8", name)
	}
	return nil
}

// validateTriage checks a triage decision against the finding.
func (s *Service) validateTriage(in api.Triage, rec state.FindingRecord) error {
	if in.Risk != vigilance.RiskControlled && in.Risk != vigilance.RiskUncontrolled {
		return apperr.New(apperr.Invalid, "risk %q is not controlled or uncontrolled", in.Risk)
	}
	for _, t := range []struct {
		name, v  string
		required bool
	}{{"rationale", in.Rationale, true}, {"action", in.Action, in.VEXStatus == api.VEXAffected}, {"aware_reason", in.AwareReason, !in.Aware.IsZero()}} {
		if err := checkText(t.name, t.v, t.required); err != nil {
			return err
		}
	}
	if in.VEXStatus != "" && !slices.Contains(VEXStatuses, in.VEXStatus) {
		return apperr.New(apperr.Invalid, "VEX status %q is not one of %s", in.VEXStatus, strings.Join(VEXStatuses, ", "))
	}
	switch {
	case in.VEXStatus == api.VEXNotAffected && !slices.Contains(Justifications, in.Justification):
		return apperr.New(apperr.Invalid, "VEX status not_affected needs a justification, one of %s", strings.Join(Justifications, ", "))
	case in.VEXStatus != api.VEXNotAffected && in.Justification != "":
		return apperr.New(apperr.Invalid, "a justification goes with VEX status not_affected only")
	case in.VEXStatus == api.VEXNotAffected && in.Risk == vigilance.RiskUncontrolled:
		return apperr.New(apperr.Invalid, "a vulnerability that does not affect the release is not an uncontrolled risk")
	}
	now := s.now()
	if !in.Aware.IsZero() && (in.Aware.After(now.Add(maxClockSkew)) || in.Aware.Before(time.Unix(0, 0))) {
		return apperr.New(apperr.Invalid, "awareness date %s is in the future or before 1970", in.Aware.Format(time.RFC3339))
	}
	aware := rec.Aware
	if !in.Aware.IsZero() {
		aware = in.Aware
	}
	if !in.Notified.IsZero() && (in.Notified.After(now.Add(maxClockSkew)) || in.Notified.Before(aware)) {
		return apperr.New(apperr.Invalid, "customer notice time %s is in the future or before the awareness date", in.Notified.Format(time.RFC3339))
	}
	return nil
}

// triageView is what the audit log records of a triage.
type triageView struct {
	Risk          string    `json:"risk"`
	Rationale     string    `json:"rationale,omitempty"`
	VEXStatus     string    `json:"vex_status,omitempty"`
	Justification string    `json:"justification,omitempty"`
	Action        string    `json:"action,omitempty"`
	Aware         time.Time `json:"aware"`
	AwareReason   string    `json:"aware_reason,omitempty"`
	Notified      time.Time `json:"notified,omitzero"`
}

func viewOfTriage(r state.FindingRecord) triageView {
	return triageView{Risk: r.Risk, Rationale: r.Rationale, VEXStatus: r.VEXStatus, Justification: r.Justification, Action: r.Action,
		Aware: r.Aware, AwareReason: r.AwareReason, Notified: r.Notified}
}

// Triage records a triage decision on a finding, audited with what it
// replaced. Correcting the awareness date needs a reason; it moves both
// clocks.
func (s *Service) Triage(ctx context.Context, id string, in api.Triage) (api.FindingDetail, error) {
	rec, err := s.st.Findings.Finding(ctx, id)
	if err != nil {
		return api.FindingDetail{}, err
	}
	if err := s.validateTriage(in, rec); err != nil {
		return api.FindingDetail{}, err
	}
	before := viewOfTriage(rec)
	rec.Risk, rec.Rationale, rec.VEXStatus, rec.Justification, rec.Action = in.Risk, in.Rationale, in.VEXStatus, in.Justification, in.Action
	if !in.Aware.IsZero() {
		rec.Aware, rec.AwareReason = in.Aware.UTC(), in.AwareReason
	}
	if !in.Notified.IsZero() {
		rec.Notified = in.Notified.UTC()
	}
	rec.TriagedBy, rec.Triaged, rec.Updated = audit.ActorFrom(ctx), s.now(), s.now()
	if err := s.st.Findings.UpdateTriage(ctx, rec); err != nil {
		return api.FindingDetail{}, err
	}
	if _, err := audit.Record(ctx, s.st.Audit, "finding.triage", id, map[string]any{"release": rec.Product + "@" + rec.Version,
		"vulnerability": rec.VulnID, "before": before, "after": viewOfTriage(rec)}); err != nil {
		return api.FindingDetail{}, err
	}
	if rec.Risk == vigilance.RiskUncontrolled {
		if err := s.evaluateOne(ctx, rec, nil); err != nil {
			s.o.Log.Warn("clock evaluation after triage failed", zap.String("finding", id), zap.Error(err))
		}
	}
	return s.Finding(ctx, id)
}

// Exposure answers where a vulnerability (any of its ids) runs: sites ×
// affected releases × devices, scoped to the caller's sites.
func (s *Service) Exposure(ctx context.Context, vuln string) (api.Exposure, error) {
	out := api.Exposure{Vulnerability: vuln, IDs: []string{vuln}, Rows: []api.ExposureRow{}, Fixing: map[string]string{}, ReleasesWithoutSBOM: []string{}}
	if vuln == "" || len(vuln) > vigilance.MaxIDLength {
		return out, apperr.New(apperr.Invalid, "vulnerability id %q is empty or too long", vuln)
	}
	recs, err := s.st.Vulns.RecordsByAlias(ctx, vuln)
	if err != nil {
		return out, err
	}
	ids := map[string]bool{vuln: true}
	for _, r := range recs {
		rec, err := decodeRecord(r)
		if err != nil {
			return out, err
		}
		for _, id := range rec.IDs() {
			ids[id] = true
		}
	}
	var found []state.FindingRecord
	for _, id := range sortedSet(ids) {
		fs, err := s.st.Findings.Findings(ctx, state.FindingFilter{VulnID: id, Status: vigilance.StatusOpen})
		if err != nil {
			return out, err
		}
		found = append(found, fs...)
	}
	if len(recs) == 0 && len(found) == 0 {
		return out, apperr.New(apperr.NotFound, "no imported record and no finding names %s (import the feeds first)", vuln)
	}
	out.IDs = sortedSet(ids)
	return out, s.fillExposure(ctx, &out, found)
}

func (s *Service) fillExposure(ctx context.Context, out *api.Exposure, found []state.FindingRecord) error {
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return err
	}
	scope, scoped := operator.From(ctx)
	byProduct := map[string]map[string]bool{}
	for _, f := range found {
		out.KEV = out.KEV || f.KEV
		if byProduct[f.Product] == nil {
			byProduct[f.Product] = map[string]bool{}
		}
		byProduct[f.Product][f.Version] = true
	}
	for _, product := range sortedSet(boolKeys(byProduct)) {
		v, err := s.productView(ctx, product, pubs)
		if err != nil {
			return err
		}
		affected := byProduct[product]
		highest := ""
		for ver := range affected {
			if highest == "" || release.Compare(ver, highest) > 0 {
				highest = ver
			}
		}
		out.Fixing[product] = v.fixing(highest, affected)
		for _, c := range v.counts {
			if scoped && !scope.CanSite(c.Site) {
				continue
			}
			switch {
			case affected[c.Version]:
				out.Rows = append(out.Rows, api.ExposureRow{Site: c.Site, Release: product + "@" + c.Version, Devices: c.Count})
				out.Total += c.Count
			case c.Version != "" && !slices.Contains(v.withSBOM, c.Version):
				if r := product + "@" + c.Version; !slices.Contains(out.ReleasesWithoutSBOM, r) {
					out.ReleasesWithoutSBOM = append(out.ReleasesWithoutSBOM, r)
				}
			}
		}
	}
	return nil
}

func boolKeys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// EvaluateClocks is the clock job: for each open uncontrolled finding
// whose fix is not yet deployed, it records the peak exposure and, once
// FixDeployedShare of the exposed devices run a fixing release, the time
// the fix was deployed (which stops the fix clock; audited).
func (s *Service) EvaluateClocks(ctx context.Context) {
	recs, err := s.st.Findings.Findings(ctx, state.FindingFilter{Status: vigilance.StatusOpen, Risk: vigilance.RiskUncontrolled})
	if err != nil {
		s.o.Log.Warn("clock evaluation: cannot list findings", zap.Error(err))
		return
	}
	views := map[string]*productView{}
	for _, rec := range recs {
		if !rec.FixDeployed.IsZero() {
			continue
		}
		if err := s.evaluateOne(ctx, rec, views); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("clock evaluation failed", zap.String("finding", rec.ID), zap.Error(err))
		}
	}
}

func (s *Service) evaluateOne(ctx context.Context, rec state.FindingRecord, views map[string]*productView) error {
	if views == nil {
		views = map[string]*productView{}
	}
	pubs, err := s.cat.Releases(ctx)
	if err != nil {
		return err
	}
	v, err := s.viewOf(ctx, views, rec.Product, pubs)
	if err != nil {
		return err
	}
	var fd vigilance.Finding
	if err := json.Unmarshal(rec.Data, &fd); err != nil {
		return err
	}
	affected := v.affected(idsOf(fd))
	affected[rec.Version] = true
	fix := v.fixing(rec.Version, affected)
	exposed, remediated := v.remediation(affected, fix)
	changed := false
	if int64(exposed) > rec.ExposurePeak {
		rec.ExposurePeak, changed = int64(exposed), true
	}
	deployed := rec.FixDeployed.IsZero() && fixDeployed(fix, exposed, remediated)
	if deployed {
		rec.FixDeployed, changed = s.now(), true
	}
	if !changed {
		return nil
	}
	if err := s.st.Findings.UpdateTriage(ctx, rec); err != nil {
		return err
	}
	if deployed {
		_, err = audit.Record(ctx, s.st.Audit, "finding.fix_deployed", rec.ID, map[string]any{"release": rec.Product + "@" + rec.Version,
			"vulnerability": rec.VulnID, "fixing_release": rec.Product + "@" + fix, "remediated": remediated, "exposed": exposed})
	}
	return err
}
