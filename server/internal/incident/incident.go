// Package incident is incident response: an incident is opened on a
// finding or a disclosure case, its response steps (halt a release's
// rollouts, pause a product's rollouts, link the fix or recall release,
// notes of assessment and decisions, close) run through it, and its
// timeline, the record an FDA report needs (detection, assessment,
// containment, notices, remediation, fix deployed), is read back from the
// audit chain: never from a second record that could disagree with it.
//
// What joins the timeline: every audit entry about the incident itself or
// naming it (publishes and revokes made with --incident, its notices), and
// every entry about what it is linked to: its findings, cases, releases,
// the rollouts of those releases and its notices. Links come from the
// incident record and from the chain (a release published with
// --incident joins the incident).
//
// Concurrency: incidents are revisioned records; two concurrent changes to
// one incident cannot both win (the second gets Conflict and retries).
package incident

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Limits, with their units.
const (
	// MaxTitle bounds a title, in bytes.
	MaxTitle = 200
	// MaxLinks bounds the findings, cases, releases or notices of one
	// incident.
	MaxLinks = 500
	// timelinePage is how many audit entries one read of the chain takes.
	timelinePage = 1000
	// maxUpdateAttempts bounds retries of a change that lost a race.
	maxUpdateAttempts = 5
)

// Statuses.
const (
	Open   = "open"
	Closed = "closed"
)

// Severities.
var severities = []string{"low", "moderate", "high", "critical"}

// Rollouts is what actions need of the fleet's rollouts.
type Rollouts interface {
	List(ctx context.Context) (api.RolloutList, error)
	Control(ctx context.Context, id, action string) (api.RolloutState, error)
	HaltRelease(ctx context.Context, rel, reason string) ([]string, error)
}

// Findings checks that linked findings exist.
type Findings interface {
	Finding(ctx context.Context, id string) (api.FindingDetail, error)
}

// Cases checks that linked cases exist.
type Cases interface {
	Get(ctx context.Context, id string) (api.CVDCase, error)
}

// Store is what the service keeps and reads.
type Store interface {
	state.IncidentStore
	audit.Recorder
	AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
}

// Service runs incidents.
type Service struct {
	st       Store
	rollouts Rollouts
	findings Findings
	cases    Cases
	now      func() time.Time
}

// New returns the service.
func New(st Store, r Rollouts, f Findings, c Cases) *Service {
	return &Service{st: st, rollouts: r, findings: f, cases: c, now: time.Now}
}

func (s *Service) checkLinks(ctx context.Context, findings, cases []string) error {
	if len(findings) > MaxLinks || len(cases) > MaxLinks {
		return apperr.New(apperr.TooLarge, "an incident links at most %d findings and %d cases", MaxLinks, MaxLinks)
	}
	for _, f := range findings {
		if _, err := s.findings.Finding(ctx, f); err != nil {
			return err
		}
	}
	for _, c := range cases {
		if _, err := s.cases.Get(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// Open opens an incident.
func (s *Service) Open(ctx context.Context, in api.IncidentIn) (api.Incident, error) {
	if err := input.Required("title", in.Title, MaxTitle); err != nil {
		return api.Incident{}, err
	}
	if !slices.Contains(severities, in.Severity) {
		return api.Incident{}, apperr.New(apperr.Invalid, "severity %q is not one of %s", in.Severity, strings.Join(severities, ", ")).WithField("severity")
	}
	if in.Product != "" {
		if err := input.Identifier("product", in.Product); err != nil {
			return api.Incident{}, err
		}
	}
	if err := s.checkLinks(ctx, in.Findings, in.Cases); err != nil {
		return api.Incident{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	inc := api.Incident{ID: "INC-" + strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", "")[:10]), Title: in.Title, Severity: in.Severity,
		Product: in.Product, Status: Open, Opened: now, OpenedBy: audit.ActorFrom(ctx),
		Findings: sorted(in.Findings), Cases: sorted(in.Cases), Releases: []string{}, Notices: []string{}}
	data, _ := json.Marshal(inc)
	if err := s.st.CreateIncident(ctx, state.Doc{ID: inc.ID, Status: Open, Key: in.Product, Created: now, Updated: now, Data: data}); err != nil {
		return api.Incident{}, err
	}
	if _, err := audit.Record(ctx, s.st, "incident.open", inc.ID, map[string]any{"title": in.Title, "severity": in.Severity,
		"product": in.Product, "findings": inc.Findings, "cases": inc.Cases}); err != nil {
		return api.Incident{}, err
	}
	return inc, nil
}

func sorted(in []string) []string {
	out := append([]string{}, in...)
	slices.Sort(out)
	return slices.Compact(out)
}

func decode(d state.Doc) (api.Incident, error) {
	var inc api.Incident
	if err := json.Unmarshal(d.Data, &inc); err != nil {
		return inc, fmt.Errorf("stored incident %s: %w", d.ID, err)
	}
	return inc, nil
}

// Get returns an incident.
func (s *Service) Get(ctx context.Context, id string) (api.Incident, error) {
	d, err := s.st.Incident(ctx, id)
	if err != nil {
		return api.Incident{}, err
	}
	return decode(d)
}

// List lists incidents ("open", "closed" or all).
func (s *Service) List(ctx context.Context, status string) (api.IncidentList, error) {
	if status != "" && status != Open && status != Closed {
		return api.IncidentList{}, apperr.New(apperr.Invalid, "status %q is not open or closed", status).WithField("status")
	}
	return s.listIn(ctx, state.DocFilter{Status: status})
}

// IncidentsIn lists the incidents opened in [since, until) (evidence).
func (s *Service) IncidentsIn(ctx context.Context, since, until time.Time) (api.IncidentList, error) {
	return s.listIn(ctx, state.DocFilter{Since: since, Until: until})
}

func (s *Service) listIn(ctx context.Context, f state.DocFilter) (api.IncidentList, error) {
	docs, err := s.st.Incidents(ctx, f)
	if err != nil {
		return api.IncidentList{}, err
	}
	out := api.IncidentList{Incidents: []api.Incident{}}
	for _, d := range docs {
		inc, err := decode(d)
		if err != nil {
			return out, err
		}
		out.Incidents = append(out.Incidents, inc)
	}
	return out, nil
}

// update applies change to the stored incident, retrying when another
// change landed first.
func (s *Service) update(ctx context.Context, id string, change func(*api.Incident) error) (api.Incident, error) {
	for attempt := 1; ; attempt++ {
		d, err := s.st.Incident(ctx, id)
		if err != nil {
			return api.Incident{}, err
		}
		inc, err := decode(d)
		if err != nil {
			return inc, err
		}
		if err := change(&inc); err != nil {
			return inc, err
		}
		d.Data, _ = json.Marshal(inc)
		d.Status, d.Updated = inc.Status, s.now()
		if _, err = s.st.UpdateIncident(ctx, d); err == nil || !apperr.Is(err, apperr.Conflict) || attempt == maxUpdateAttempts {
			return inc, err
		}
	}
}

func addLink(list []string, v string) ([]string, error) {
	if slices.Contains(list, v) {
		return list, nil
	}
	if len(list) >= MaxLinks {
		return list, apperr.New(apperr.TooLarge, "the incident links %d items of this kind, the limit", MaxLinks)
	}
	return sorted(append(list, v)), nil
}

// AddNotice links a notice to an open incident (notice.Service).
func (s *Service) AddNotice(ctx context.Context, id, notice string) error {
	_, err := s.update(ctx, id, func(inc *api.Incident) error {
		if inc.Status != Open {
			return apperr.New(apperr.Conflict, "incident %s is closed", id).WithCode(api.CodeBadTransition)
		}
		var err error
		inc.Notices, err = addLink(inc.Notices, notice)
		return err
	})
	return err
}

// Act runs one response step through the incident and records it.
func (s *Service) Act(ctx context.Context, id string, a api.IncidentAction) (api.IncidentActionResult, error) {
	if err := input.Text("note", a.Note, input.MaxComment); err != nil {
		return api.IncidentActionResult{}, err
	}
	inc, err := s.Get(ctx, id)
	if err != nil {
		return api.IncidentActionResult{}, err
	}
	if inc.Status != Open {
		return api.IncidentActionResult{}, apperr.New(apperr.Conflict, "incident %s is closed", id).WithCode(api.CodeBadTransition)
	}
	var res api.IncidentActionResult
	details := map[string]any{"note": a.Note}
	change := func(*api.Incident) error { return nil }
	switch a.Action {
	case api.ActionHalt:
		if a.Note == "" {
			return res, apperr.New(apperr.Invalid, "a halt needs a note saying why").WithField("note")
		}
		if res.Rollouts, err = s.rollouts.HaltRelease(ctx, a.Release, "incident "+id+": "+a.Note); err != nil {
			return res, err
		}
		details["release"], details["rollouts"] = a.Release, res.Rollouts
		change = func(i *api.Incident) (err error) { i.Releases, err = addLink(i.Releases, a.Release); return }
	case api.ActionPauseProduct:
		if res.Rollouts, err = s.pauseProduct(ctx, a.Product); err != nil {
			return res, err
		}
		details["product"], details["rollouts"] = a.Product, res.Rollouts
	case api.ActionLink:
		if details, change, err = s.link(ctx, a); err != nil {
			return res, err
		}
	case api.ActionNote:
		if strings.TrimSpace(a.Note) == "" {
			return res, apperr.New(apperr.Invalid, "note is required").WithField("note")
		}
	case api.ActionClose:
		change = func(i *api.Incident) error { i.Status, i.Closed = Closed, s.now().UTC(); return nil }
	default:
		return res, apperr.New(apperr.Invalid, "action %q is not one of halt, pause_product, link, note, close", a.Action).WithField("action")
	}
	if res.Incident, err = s.update(ctx, id, change); err != nil {
		return res, err
	}
	if _, err := audit.Record(ctx, s.st, "incident."+a.Action, id, details); err != nil {
		return res, err
	}
	return res, nil
}

func (s *Service) link(ctx context.Context, a api.IncidentAction) (map[string]any, func(*api.Incident) error, error) {
	switch {
	case a.Release != "":
		if _, _, err := fleet.ParseRelease(a.Release); err != nil {
			return nil, nil, err
		}
		return map[string]any{"release": a.Release, "note": a.Note},
			func(i *api.Incident) (err error) { i.Releases, err = addLink(i.Releases, a.Release); return }, nil
	case a.Finding != "":
		if err := s.checkLinks(ctx, []string{a.Finding}, nil); err != nil {
			return nil, nil, err
		}
		return map[string]any{"finding": a.Finding, "note": a.Note},
			func(i *api.Incident) (err error) { i.Findings, err = addLink(i.Findings, a.Finding); return }, nil
	case a.Case != "":
		if err := s.checkLinks(ctx, nil, []string{a.Case}); err != nil {
			return nil, nil, err
		}
		return map[string]any{"case": a.Case, "note": a.Note},
			func(i *api.Incident) (err error) { i.Cases, err = addLink(i.Cases, a.Case); return }, nil
	}
	return nil, nil, apperr.New(apperr.Invalid, "link names a release, a finding or a case")
}

// pauseProduct pauses every active rollout of a product.
func (s *Service) pauseProduct(ctx context.Context, product string) ([]string, error) {
	if err := input.Identifier("product", product); err != nil {
		return nil, err
	}
	l, err := s.rollouts.List(ctx)
	if err != nil {
		return nil, err
	}
	paused := []string{}
	for _, r := range l.Rollouts {
		if !strings.HasPrefix(r.Release, product+"@") || r.State != "active" {
			continue
		}
		if _, err := s.rollouts.Control(ctx, r.ID, "pause"); err != nil {
			return paused, err
		}
		paused = append(paused, r.ID)
	}
	return paused, nil
}
