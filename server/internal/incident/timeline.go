package incident

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/audit"
)

// Timeline phases.
const (
	PhaseDetection   = "detection"
	PhaseAssessment  = "assessment"
	PhaseContainment = "containment"
	PhaseNotice      = "notice"
	PhaseRemediation = "remediation"
	PhaseFixDeployed = "fix_deployed"
	PhaseClosure     = "closure"
	PhaseOther       = "other"
)

// phases maps audited actions to the phase of an incident they document.
var phases = map[string]string{
	"finding.open": PhaseDetection, "cvd.received": PhaseDetection,
	"incident.open": PhaseAssessment, "incident.note": PhaseAssessment, "incident.link": PhaseAssessment,
	"finding.triage": PhaseAssessment, "cvd.acknowledged": PhaseAssessment, "cvd.triaged": PhaseAssessment,
	"cvd.confirmed": PhaseAssessment, "cvd.rejected": PhaseAssessment, "cvd.duplicate": PhaseAssessment, "cvd.link": PhaseAssessment,
	"cvd.message":  PhaseAssessment,
	"release.halt": PhaseContainment, "release.revoke": PhaseContainment, "incident.halt": PhaseContainment,
	"incident.pause_product": PhaseContainment, "rollout.pause": PhaseContainment, "rollout.abort": PhaseContainment,
	"repo.rotate":   PhaseContainment,
	"notice.create": PhaseNotice, "notice.delivered": PhaseNotice, "notice.delivery_failed": PhaseNotice, "notice.ack": PhaseNotice,
	"release.publish": PhaseRemediation, "rollout.create": PhaseRemediation, "rollout.resume": PhaseRemediation,
	"rollout.approve": PhaseRemediation, "cvd.fixed": PhaseRemediation,
	"finding.fix_deployed": PhaseFixDeployed,
	"incident.close":       PhaseClosure, "cvd.disclosed": PhaseClosure,
}

// PhaseOf is the phase an audited action documents.
func PhaseOf(action string) string {
	if p, ok := phases[action]; ok {
		return p
	}
	return PhaseOther
}

// related is what the timeline follows.
type related struct {
	id       string
	subjects map[string]bool
	releases map[string]bool
}

func newRelated(inc api.Incident) *related {
	r := &related{id: inc.ID, subjects: map[string]bool{inc.ID: true}, releases: map[string]bool{}}
	for _, list := range [][]string{inc.Findings, inc.Cases, inc.Notices} {
		for _, v := range list {
			r.subjects[v] = true
		}
	}
	for _, v := range inc.Releases {
		r.subjects[v], r.releases[v] = true, true
	}
	return r
}

type detailRefs struct {
	Incident string `json:"incident"`
	Release  string `json:"release"`
	Case     string `json:"case"`
}

// learn adds what an entry links: a release published or revoked with
// --incident, a rollout of a linked release, findings a linked case opened.
func (r *related) learn(e audit.Entry) {
	var d detailRefs
	_ = json.Unmarshal(e.Details, &d)
	switch {
	case d.Incident == r.id && strings.HasPrefix(e.Action, "release."):
		r.subjects[e.Subject], r.releases[e.Subject] = true, true
	case e.Action == "rollout.create" && r.releases[d.Release]:
		r.subjects[e.Subject] = true
	case e.Action == "finding.open" && r.subjects[d.Case]:
		r.subjects[e.Subject] = true
	}
}

func (r *related) match(e audit.Entry) bool {
	if e.Action == "repo.publish" {
		return false // its release.* entries say what the publish meant
	}
	if r.subjects[e.Subject] {
		return true
	}
	var d detailRefs
	_ = json.Unmarshal(e.Details, &d)
	return d.Incident == r.id
}

// scan reads the whole chain in pages and calls fn for each entry.
func (s *Service) scan(ctx context.Context, fn func(audit.Entry)) error {
	var after int64
	for {
		page, err := s.st.AuditEntries(ctx, after, time.Time{}, timelinePage)
		if err != nil {
			return err
		}
		for _, e := range page {
			fn(e)
			after = e.Seq
		}
		if len(page) < timelinePage {
			return nil
		}
	}
}

// Timeline is the incident's timeline from the audit chain. It reads the
// chain twice: once to learn the links made through the chain, once to
// select the entries; each entry keeps its sequence number and hash, so
// it can be checked against an exported chain.
func (s *Service) Timeline(ctx context.Context, id string) (api.Timeline, error) {
	inc, err := s.Get(ctx, id)
	if err != nil {
		return api.Timeline{}, err
	}
	r := newRelated(inc)
	if err := s.scan(ctx, r.learn); err != nil {
		return api.Timeline{}, err
	}
	out := api.Timeline{Incident: inc, Entries: []api.TimelineEntry{}}
	err = s.scan(ctx, func(e audit.Entry) {
		if r.match(e) {
			out.Entries = append(out.Entries, api.TimelineEntry{Seq: e.Seq, Time: e.Time, Phase: PhaseOf(e.Action), Actor: e.Actor,
				Action: e.Action, Subject: e.Subject, Details: e.Details, Hash: e.Hash})
		}
	})
	return out, err
}
