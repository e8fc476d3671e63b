package incident_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/incident"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

type rollouts struct {
	list   []api.RolloutStatus
	paused []string
	halted []string
}

func (r *rollouts) List(context.Context) (api.RolloutList, error) {
	return api.RolloutList{Rollouts: r.list}, nil
}
func (r *rollouts) Control(_ context.Context, id, action string) (api.RolloutState, error) {
	r.paused = append(r.paused, id)
	return api.RolloutState{ID: id, State: "paused"}, nil
}
func (r *rollouts) HaltRelease(_ context.Context, rel, reason string) ([]string, error) {
	r.halted = append(r.halted, rel)
	return []string{"ro-1"}, nil
}

type findings struct{}

func (findings) Finding(_ context.Context, id string) (api.FindingDetail, error) {
	if id == "F-1" {
		return api.FindingDetail{}, nil
	}
	return api.FindingDetail{}, apperr.New(apperr.NotFound, "no finding %q", id)
}

type cases struct{}

func (cases) Get(_ context.Context, id string) (api.CVDCase, error) {
	return api.CVDCase{}, apperr.New(apperr.NotFound, "no case %q", id)
}

func setup(t *testing.T) (*incident.Service, *rollouts) {
	st, err := sqlstore.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rollouts{list: []api.RolloutStatus{
		{ID: "ro-a", Release: "demo-pump@1.1.0", State: "active"},
		{ID: "ro-b", Release: "demo-pump@1.0.9", State: "halted"},
		{ID: "ro-c", Release: "demo-pump-x@1.1.0", State: "active"},
		{ID: "ro-d", Release: "demo-pump@1.2.0", State: "active"},
	}}
	return incident.New(st, r, findings{}, cases{}), r
}

func TestPausingAProductPausesOnlyItsActiveRollouts(t *testing.T) {
	s, r := setup(t)
	ctx := audit.WithActor(context.Background(), "token:t:ic")
	inc, err := s.Open(ctx, api.IncidentIn{Title: "t", Severity: "high", Findings: []string{"F-1"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionPauseProduct, Product: "demo-pump", Note: "until we know"})
	if err != nil || !slices.Equal(res.Rollouts, []string{"ro-a", "ro-d"}) || !slices.Equal(r.paused, []string{"ro-a", "ro-d"}) {
		t.Fatalf("%+v %v paused %v", res, err, r.paused)
	}
}

func TestActionsAreCheckedAndAClosedIncidentRefusesThem(t *testing.T) {
	s, r := setup(t)
	ctx := context.Background()
	for name, in := range map[string]api.IncidentIn{
		"no title":        {Severity: "high"},
		"bad severity":    {Title: "t", Severity: "sev1"},
		"unknown finding": {Title: "t", Severity: "high", Findings: []string{"F-404"}},
		"unknown case":    {Title: "t", Severity: "high", Cases: []string{"CVD-404"}},
		"product path":    {Title: "t", Severity: "high", Product: "../x"},
	} {
		if _, err := s.Open(ctx, in); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	inc, _ := s.Open(ctx, api.IncidentIn{Title: "t", Severity: "low"})
	if _, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionHalt, Release: "demo-pump@1.1.0"}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("a halt without a note: %v", err)
	}
	if _, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: "delete"}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("an unknown action: %v", err)
	}
	res, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionHalt, Release: "demo-pump@1.1.0", Note: "bad"})
	if err != nil || !slices.Equal(res.Incident.Releases, []string{"demo-pump@1.1.0"}) || !slices.Equal(r.halted, []string{"demo-pump@1.1.0"}) {
		t.Fatalf("halt: %+v %v", res, err)
	}
	if _, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionClose}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionNote, Note: "late"}); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("acting on a closed incident: %v", err)
	}
	if err := s.AddNotice(ctx, inc.ID, "N-1"); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("a notice for a closed incident: %v", err)
	}
}

// The timeline holds the incident's own entries and those of what it
// links, from the audit chain, with their phases; nothing else.
func TestTheTimelineIsReadFromTheAuditChain(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	inc, _ := s.Open(ctx, api.IncidentIn{Title: "t", Severity: "high", Findings: []string{"F-1"}})
	s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionHalt, Release: "demo-pump@1.1.0", Note: "bad"})
	s.Act(ctx, inc.ID, api.IncidentAction{Action: api.ActionNote, Note: "decided to revoke"})
	tl, err := s.Timeline(ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tl.Entries {
		got = append(got, e.Phase+" "+e.Action)
	}
	want := []string{"assessment incident.open", "containment incident.halt", "assessment incident.note"}
	if !slices.Equal(got, want) {
		t.Fatalf("timeline %v, want %v", got, want)
	}
	if incident.PhaseOf("release.revoke") != incident.PhaseContainment || incident.PhaseOf("something.else") != incident.PhaseOther {
		t.Fatal("phases")
	}
}
