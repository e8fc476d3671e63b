package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// PlanInput is a rollout plan as release engineers write it (flags or a
// YAML plan file).
type PlanInput struct {
	Release string `json:"release" yaml:"release"` // PRODUCT@VERSION
	Select  string `json:"select" yaml:"select"`
	Waves   string `json:"waves" yaml:"waves"`
	Soak    string `json:"soak" yaml:"soak"`
	Success string `json:"success" yaml:"success"`
	HaltOn  string `json:"halt_on" yaml:"halt_on"`
}

// ParseRelease splits PRODUCT@VERSION.
func ParseRelease(s string) (product, version string, err error) {
	p, v, ok := strings.Cut(s, "@")
	if !ok || release.ValidateProduct(p) != nil || release.ValidateVersion(v) != nil {
		return "", "", apperr.New(apperr.Invalid, "release %q is not PRODUCT@VERSION such as demo-pump@1.1.0", s)
	}
	return p, v, nil
}

// Plan turns the input into a validated plan.
func (in PlanInput) Plan() (rollout.Plan, error) {
	var p rollout.Plan
	var err error
	bad := func(err error) (rollout.Plan, error) { return p, apperr.New(apperr.Invalid, "%v", err) }
	if p.Product, p.Version, err = ParseRelease(in.Release); err != nil {
		return p, err
	}
	sel := in.Select
	if sel == "" {
		sel = "product=" + p.Product
	}
	if p.Select, err = rollout.ParseSelection(sel); err != nil {
		return bad(err)
	}
	if p.Waves, err = rollout.ParseWaves(orDefault(in.Waves, "all:100%")); err != nil {
		return bad(err)
	}
	if p.Soak, err = time.ParseDuration(orDefault(in.Soak, rollout.DefaultSoak.String())); err != nil {
		return bad(fmt.Errorf("soak %q is not a duration such as 24h", in.Soak))
	}
	if p.Success, err = rollout.ParsePercent(orDefault(in.Success, "95%")); err != nil {
		return bad(fmt.Errorf("success: %w", err))
	}
	if p.Halt, err = rollout.ParseHaltRule(orDefault(in.HaltOn, "failure>=5% min=20")); err != nil {
		return bad(err)
	}
	if err := p.Validate(); err != nil {
		return bad(err)
	}
	return p, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// CreateRollout starts a rollout of a published release.
func (s *Service) CreateRollout(ctx context.Context, in PlanInput) (state.Rollout, error) {
	p, err := in.Plan()
	if err != nil {
		return state.Rollout{}, err
	}
	if s.targets == nil {
		return state.Rollout{}, apperr.New(apperr.Unavailable, "the repository is not available to resolve releases")
	}
	target, severity, err := s.targets.ReleaseTarget(ctx, p.Product, p.Version)
	if err != nil {
		return state.Rollout{}, err
	}
	p.Severity = severity
	plan, _ := json.Marshal(p)
	now := s.now().UTC()
	r := state.Rollout{ID: newID(), Product: p.Product, Version: p.Version, Target: target, Plan: plan, State: string(rollout.Active), WaveOpened: now, Created: now}
	if err := s.st.CreateRollout(ctx, r); err != nil {
		return r, err
	}
	s.record(ctx, "rollout.create", r.ID, map[string]any{"release": in.Release, "plan": in})
	if err := s.advance(ctx, r.ID); err != nil {
		return r, err
	}
	return s.st.Rollout(ctx, r.ID)
}

// RolloutStatus is a rollout with its counts per wave and site.
type RolloutStatus struct {
	ID          string           `json:"id"`
	Release     string           `json:"release"`
	Target      string           `json:"target"`
	State       string           `json:"state"`
	CurrentWave string           `json:"current_wave"`
	WaveOpened  time.Time        `json:"wave_opened"`
	HaltReason  string           `json:"halt_reason,omitempty"`
	Waves       []rollout.Wave   `json:"waves"`
	Counts      []rollout.Counts `json:"counts"`
	// WaitingFor names the sites whose approval the open wave still
	// needs: they hold devices of that wave and have not approved it.
	WaitingFor []string `json:"waiting_for,omitempty"`
}

// Status reports a rollout. It reads this replica's cached decision state
// (kept current by events, re-read every EpochCheckInterval), so a read
// costs O(waves × sites) however many devices the rollout has; only the
// first read after the fleet changed loads it again.
func (s *Service) Status(ctx context.Context, id string) (RolloutStatus, error) {
	r, err := s.st.Rollout(ctx, id)
	if err != nil {
		return RolloutStatus{}, err
	}
	s.mu.Lock()
	if err := s.syncLocked(ctx); err != nil {
		s.mu.Unlock()
		return RolloutStatus{}, err
	}
	snap, ok := s.snapshots[id]
	if !ok || snap.Rollout.CurrentWave != r.CurrentWave || string(snap.Rollout.State) != r.State || snap.Rollout.HaltReason != r.HaltReason {
		if snap, err = s.loadSnapshot(ctx, r); err != nil {
			s.mu.Unlock()
			return RolloutStatus{}, err
		}
		s.snapshots[id] = snap
	}
	waves := snap.Rollout.Plan.Waves
	counts := snap.Status(s.now())
	waiting := snap.WaitingFor(s.now())
	s.mu.Unlock()
	if p, ok := operator.From(ctx); ok && p.SiteScoped() {
		var mine []rollout.Counts // site IT sees only its own sites
		for _, c := range counts {
			if p.CanSite(c.Site) {
				mine = append(mine, c)
			}
		}
		counts = mine
		var mySites []string
		for _, site := range waiting {
			if p.CanSite(site) {
				mySites = append(mySites, site)
			}
		}
		waiting = mySites
	}
	return RolloutStatus{ID: r.ID, Release: r.Product + "@" + r.Version, Target: r.Target, State: r.State, CurrentWave: waves[min(r.CurrentWave, len(waves)-1)].Name,
		WaveOpened: r.WaveOpened, HaltReason: r.HaltReason, Waves: waves, Counts: counts, WaitingFor: waiting}, nil
}

// Control applies pause, resume or abort.
func (s *Service) Control(ctx context.Context, id, action string) (state.Rollout, error) {
	r, err := s.st.Rollout(ctx, id)
	if err != nil {
		return r, err
	}
	switch {
	case action == "pause" && r.State == string(rollout.Active):
		r.State = string(rollout.Paused)
	case action == "resume" && (r.State == string(rollout.Paused) || r.State == string(rollout.Halted)):
		r.State, r.HaltReason = string(rollout.Active), ""
	case action == "abort" && r.State != string(rollout.Aborted):
		r.State = string(rollout.Aborted)
	default:
		return r, apperr.New(apperr.Conflict, "cannot %s a rollout that is %s", action, r.State).WithCode("bad_transition")
	}
	if r, err = s.st.UpdateRollout(ctx, r); err != nil {
		return r, err
	}
	s.record(ctx, "rollout."+action, id, nil)
	return r, nil
}

// HaltRelease halts every active or paused rollout of a release at once.
func (s *Service) HaltRelease(ctx context.Context, rel, reason string) ([]string, error) {
	product, version, err := ParseRelease(rel)
	if err != nil {
		return nil, err
	}
	if err := input.Required("reason", reason, input.MaxComment); err != nil {
		return nil, err
	}
	if s.targets != nil {
		if _, _, err := s.targets.ReleaseTarget(ctx, product, version); err != nil {
			return nil, err // an unknown release: nothing to halt, nothing to audit
		}
	}
	rs, err := s.st.Rollouts(ctx, product)
	if err != nil {
		return nil, err
	}
	var halted []string
	for _, r := range rs {
		if r.Version != version || (r.State != string(rollout.Active) && r.State != string(rollout.Paused)) {
			continue
		}
		r.State, r.HaltReason = string(rollout.Halted), "emergency halt of "+rel+": "+reason
		if _, err := s.st.UpdateRollout(ctx, r); err != nil {
			return halted, err
		}
		halted = append(halted, r.ID)
	}
	s.record(ctx, "release.halt", rel, map[string]any{"rollouts": halted, "reason": reason})
	return halted, nil
}

func waveIndex(p rollout.Plan, name string) (int, error) {
	for i, w := range p.Waves {
		if w.Name == name {
			return i, nil
		}
	}
	return 0, apperr.New(apperr.Invalid, "the rollout has no wave %q", name)
}

func (s *Service) planOf(ctx context.Context, id string) (state.Rollout, rollout.Plan, error) {
	r, err := s.st.Rollout(ctx, id)
	if err != nil {
		return r, rollout.Plan{}, err
	}
	var p rollout.Plan
	return r, p, json.Unmarshal(r.Plan, &p)
}

// ApprovalInput is hospital IT's decision for one wave at one site.
type ApprovalInput struct {
	Wave      string    `json:"wave"`
	Site      string    `json:"site"`
	Comment   string    `json:"comment"`
	NotBefore time.Time `json:"not_before"`
	Revoke    bool      `json:"revoke"`
}

// scoped refuses a site-scoped operator acting on another site.
func scoped(ctx context.Context, site string) error {
	if p, ok := operator.From(ctx); ok && !p.CanSite(site) {
		return apperr.New(apperr.Forbidden, "your token is limited to sites %v; %q is not one of them", p.Sites, site)
	}
	return nil
}

// Approve records (or revokes) an approval.
func (s *Service) Approve(ctx context.Context, id string, in ApprovalInput) error {
	by := audit.ActorFrom(ctx)
	if err := input.Text("comment", in.Comment, input.MaxComment); err != nil {
		return err
	}
	p, w, err := s.waveAtSite(ctx, id, in.Wave, in.Site)
	if err != nil {
		return err
	}
	if in.Revoke {
		prog, err := s.st.Progress(ctx, id)
		if err != nil {
			return err
		}
		devs, err := s.st.DevicesOf(ctx, p.Product)
		if err != nil {
			return err
		}
		siteOf := map[string]string{}
		for _, d := range devs {
			siteOf[d.ID] = d.Site
		}
		for _, pr := range prog {
			if pr.Wave == w && siteOf[pr.DeviceID] == in.Site {
				return apperr.New(apperr.Conflict, "devices at %s already started wave %s; pause or halt the rollout instead", in.Site, in.Wave).WithCode("wave_started")
			}
		}
	}
	if err := s.st.PutApproval(ctx, state.Approval{RolloutID: id, Wave: w, Site: in.Site, By: by, Comment: in.Comment, NotBefore: in.NotBefore, At: s.now(), Revoked: in.Revoke}); err != nil {
		return err
	}
	action := "rollout.approve"
	if in.Revoke {
		action = "rollout.approval_revoke"
	}
	s.record(ctx, action, id, in)
	s.forget(id)
	return s.advance(ctx, id) // an approval can complete a wave with nothing left to do
}

// forget drops this replica's cached decision state of a rollout, so the
// next decision reads approvals and deferrals afresh (other replicas see
// the change through the fleet epoch).
func (s *Service) forget(id string) {
	s.mu.Lock()
	delete(s.snapshots, id)
	s.mu.Unlock()
}

// MaxDeferral is the longest one deferral may last.
const MaxDeferral = 90 * 24 * time.Hour

// DeferralInput is a site's "not now" for a wave.
type DeferralInput struct {
	Wave   string    `json:"wave"`
	Site   string    `json:"site"`
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

// Defer records a site's deferral.
func (s *Service) Defer(ctx context.Context, id string, in DeferralInput) error {
	_, w, err := s.waveAtSite(ctx, id, in.Wave, in.Site)
	if err != nil {
		return err
	}
	if in.Reason == "" || !in.Until.After(s.now()) {
		return apperr.New(apperr.Invalid, "a deferral needs a reason and an expiry in the future")
	}
	if err := input.Text("reason", in.Reason, input.MaxComment); err != nil {
		return err
	}
	if in.Until.After(s.now().Add(MaxDeferral)) {
		return apperr.New(apperr.Invalid, "a deferral lasts at most %s; defer again when it ends", MaxDeferral)
	}
	if err := s.st.PutDeferral(ctx, state.Deferral{RolloutID: id, Wave: w, Site: in.Site, Reason: in.Reason, Until: in.Until}); err != nil {
		return err
	}
	s.record(ctx, "rollout.defer", id, in)
	s.forget(id)
	return nil
}

// waveAtSite resolves a site's decision about one wave of a rollout: the
// operator may act for the site, the wave and the site exist.
func (s *Service) waveAtSite(ctx context.Context, id, wave, site string) (rollout.Plan, int, error) {
	if err := scoped(ctx, site); err != nil {
		return rollout.Plan{}, 0, err
	}
	_, p, err := s.planOf(ctx, id)
	if err != nil {
		return p, 0, err
	}
	w, err := waveIndex(p, wave)
	if err != nil {
		return p, 0, err
	}
	return p, w, s.siteExists(ctx, site)
}

func (s *Service) siteExists(ctx context.Context, name string) error {
	sites, err := s.st.Sites(ctx)
	if err != nil {
		return err
	}
	for _, st := range sites {
		if st.Name == name {
			return nil
		}
	}
	return apperr.New(apperr.NotFound, "site %q does not exist", name)
}

// applyProgress moves a device's rollout progress from its events.
func (s *Service) applyProgress(ctx context.Context, dev state.Device, evs []state.DeviceEvent) error {
	s.mu.Lock()
	rs, ok := s.rollouts[dev.Product]
	s.mu.Unlock()
	if !ok {
		var err error
		if rs, err = s.st.Rollouts(ctx, dev.Product); err != nil {
			return err
		}
	}
	touched := map[string]bool{}
	for _, r := range rs {
		var mine []state.DeviceEvent
		for _, e := range evs {
			if e.Target == r.Target && e.State != "idle" {
				mine = append(mine, e)
			}
		}
		if len(mine) == 0 {
			continue
		}
		// Only a device the rollout assigned moves its counters.
		p, err := s.st.DeviceProgress(ctx, r.ID, dev.ID)
		if apperr.Is(err, apperr.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range mine {
			if rollout.IsFinal(p.State) {
				break
			}
			p.State, p.Updated = e.State, e.Time
		}
		if _, err := s.st.SetProgress(ctx, p, false); err != nil {
			return err
		}
		s.mu.Lock() // this replica's cached decisions see it at once
		if snap, ok := s.snapshots[r.ID]; ok {
			snap.SetProgress(dev.ID, p.State, p.Updated)
		}
		s.mu.Unlock()
		// Only finished attempts move the rules (success, halt).
		if rollout.IsFinal(p.State) {
			touched[r.ID] = true
		}
	}
	for id := range touched {
		if err := s.advance(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// advance applies a rollout's automatic rules (halt, next wave) now. It
// decides on this replica's cached state when it is current, and stores
// the change with the rollout's revision, so replicas never both apply it.
func (s *Service) advance(ctx context.Context, id string) error {
	r, err := s.st.Rollout(ctx, id)
	if err != nil || r.State != string(rollout.Active) {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[id]
	if !ok || snap.Rollout.CurrentWave != r.CurrentWave || string(snap.Rollout.State) != r.State {
		if snap, err = s.loadSnapshot(ctx, r); err != nil {
			return err
		}
	}
	change := snap.Advance(s.now())
	if change == "" {
		s.snapshots[id] = snap
		return nil
	}
	r.State, r.CurrentWave, r.WaveOpened, r.HaltReason = string(snap.Rollout.State), snap.Rollout.CurrentWave, snap.Rollout.WaveOpened, snap.Rollout.HaltReason
	if _, err := s.st.UpdateRollout(ctx, r); err != nil {
		delete(s.snapshots, id)
		if apperr.Is(err, apperr.Conflict) {
			return nil // another replica advanced it first
		}
		return err
	}
	s.snapshots[id] = snap
	delete(s.rollouts, r.Product) // the cached list holds the old wave
	s.log.Info("rollout advanced", zap.String("rollout", id), zap.String("change", change))
	action := "rollout.wave_open"
	if snap.Rollout.State == rollout.Halted {
		action = "rollout.halt"
	}
	s.record(ctx, action, id, map[string]string{"change": change})
	return nil
}

// Tick is one controller pass: write buffered check-ins, then apply the
// automatic rules to every active rollout (soak times end without events).
func (s *Service) Tick(ctx context.Context) {
	if err := s.FlushLastSeen(ctx); err != nil {
		s.log.Warn("writing check-ins", zap.Error(err))
	}
	rs, err := s.st.Rollouts(ctx, "")
	if err != nil {
		s.log.Warn("rollout controller", zap.Error(err))
		return
	}
	for _, r := range rs {
		if r.State == string(rollout.Active) {
			if err := s.advance(ctx, r.ID); err != nil {
				s.log.Warn("rollout controller", zap.String("rollout", r.ID), zap.Error(err))
			}
		}
	}
}

// RunController runs Tick every interval until ctx ends.
func (s *Service) RunController(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(min(interval, LastSeenFlushInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.FlushLastSeen(context.WithoutCancel(ctx))
			return
		case <-t.C:
		}
		s.Tick(ctx)
	}
}
