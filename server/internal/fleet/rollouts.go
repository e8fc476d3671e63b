package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// MaxDeferral is the longest one deferral may last.
const MaxDeferral = 90 * 24 * time.Hour

// Rollouts carries out rollout plans (the package doc has its rules).
type Rollouts struct {
	ro      state.RolloutStore
	prog    state.ProgressStore
	reg     state.RegistryStore
	cache   *cache
	targets Targets
	served  state.ServedStore // nil: status shows no served bytes
	rec     recorder
	log     *zap.Logger
	clock   *clock
}

// ParseRelease splits PRODUCT@VERSION.
func ParseRelease(s string) (product, version string, err error) {
	p, v, ok := strings.Cut(s, "@")
	if !ok || release.ValidateProduct(p) != nil || release.ValidateVersion(v) != nil {
		return "", "", apperr.New(apperr.Invalid, "release %q is not PRODUCT@VERSION such as demo-pump@1.1.0", s)
	}
	return p, v, nil
}

// Plan turns a plan as written into a validated plan.
func Plan(in api.RolloutPlan) (rollout.Plan, error) {
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

// Create starts a rollout of a published release.
func (s *Rollouts) Create(ctx context.Context, in api.RolloutPlan) (api.RolloutCreated, error) {
	p, err := Plan(in)
	if err != nil {
		return api.RolloutCreated{}, err
	}
	if s.targets == nil {
		return api.RolloutCreated{}, apperr.New(apperr.Unavailable, "the repository is not available to resolve releases")
	}
	target, severity, err := s.targets.ReleaseTarget(ctx, p.Product, p.Version)
	if err != nil {
		return api.RolloutCreated{}, err
	}
	p.Severity = severity
	plan, _ := json.Marshal(p)
	now := s.clock.Now().UTC()
	r := state.Rollout{ID: newID(), Product: p.Product, Version: p.Version, Target: target, Plan: plan, State: string(rollout.Active), WaveOpened: now, Created: now}
	if err := s.ro.CreateRollout(ctx, r); err != nil {
		return api.RolloutCreated{}, err
	}
	s.cache.forget(r.ID, r.Product)
	s.rec.record(ctx, "rollout.create", r.ID, map[string]any{"release": in.Release, "plan": in})
	if err := s.advance(ctx, r.ID); err != nil {
		return api.RolloutCreated{}, err
	}
	r, err = s.ro.Rollout(ctx, r.ID)
	return api.RolloutCreated{ID: r.ID, Target: r.Target, State: r.State}, err
}

// Status reports a rollout. It reads this replica's cached decision state
// (kept current by events, re-read every EpochCheckInterval), so a read
// costs O(waves × sites) however many devices the rollout has; only the
// first read after the fleet changed loads it again. A site-scoped
// operator sees only its own sites.
func (s *Rollouts) Status(ctx context.Context, id string) (api.RolloutStatus, error) {
	r, err := s.ro.Rollout(ctx, id)
	if err != nil {
		return api.RolloutStatus{}, err
	}
	if err := s.cache.refresh(ctx); err != nil {
		return api.RolloutStatus{}, err
	}
	snap, err := s.cache.snapshot(ctx, r)
	if err != nil {
		return api.RolloutStatus{}, err
	}
	var counts []api.WaveCounts
	var waiting []string
	now := s.clock.Now()
	s.cache.with(func() {
		counts = snap.Status(now)
		waiting = snap.WaitingFor(now)
	})
	if p, ok := operator.From(ctx); ok && p.SiteScoped() {
		var mine []api.WaveCounts
		for _, c := range counts {
			if p.CanSite(c.Site) {
				mine = append(mine, c)
			}
		}
		var mySites []string
		for _, site := range waiting {
			if p.CanSite(site) {
				mySites = append(mySites, site)
			}
		}
		counts, waiting = mine, mySites
	}
	if counts == nil {
		counts = []api.WaveCounts{}
	}
	var served *api.ServedBytes
	if p, ok := operator.From(ctx); s.served != nil && !(ok && p.SiteScoped()) {
		byKind, err := s.served.ServedOf(ctx, r.Product, r.Version)
		if err != nil {
			return api.RolloutStatus{}, err
		}
		served = &api.ServedBytes{FullBytes: byKind[release.KindFull].Bytes, DeltaBytes: byKind[release.KindDelta].Bytes,
			FullRequests: byKind[release.KindFull].Requests, DeltaRequests: byKind[release.KindDelta].Requests}
	}
	waves := snap.Rollout.Plan.Waves
	return api.RolloutStatus{ID: r.ID, Release: r.Product + "@" + r.Version, Target: r.Target, State: r.State, CurrentWave: waves[min(r.CurrentWave, len(waves)-1)].Name,
		WaveOpened: r.WaveOpened, HaltReason: r.HaltReason, Waves: waves, Counts: counts, WaitingFor: waiting, Served: served}, nil
}

// Rollout controls.
const (
	ControlPause  = "pause"
	ControlResume = "resume"
	ControlAbort  = "abort"
)

// Control applies pause, resume or abort.
func (s *Rollouts) Control(ctx context.Context, id, action string) (api.RolloutState, error) {
	r, err := s.ro.Rollout(ctx, id)
	if err != nil {
		return api.RolloutState{}, err
	}
	switch {
	case action == ControlPause && r.State == string(rollout.Active):
		r.State = string(rollout.Paused)
	case action == ControlResume && (r.State == string(rollout.Paused) || r.State == string(rollout.Halted)):
		r.State, r.HaltReason = string(rollout.Active), ""
	case action == ControlAbort && r.State != string(rollout.Aborted):
		r.State = string(rollout.Aborted)
	default:
		return api.RolloutState{}, apperr.New(apperr.Conflict, "cannot %s a rollout that is %s", action, r.State).WithCode(api.CodeBadTransition)
	}
	if r, err = s.ro.UpdateRollout(ctx, r); err != nil {
		return api.RolloutState{}, err
	}
	s.cache.forget(id, r.Product)
	s.rec.record(ctx, "rollout."+action, id, nil)
	return api.RolloutState{ID: r.ID, State: r.State}, nil
}

// HaltRelease halts every active or paused rollout of a release at once.
func (s *Rollouts) HaltRelease(ctx context.Context, rel, reason string) ([]string, error) {
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
	return s.halt(ctx, product, version, rel, reason, true)
}

// HaltRevoked halts every rollout of a release its product role no longer
// holds (a revoke): devices could not install it anyway; the halt stops
// assignments and shows why.
func (s *Rollouts) HaltRevoked(ctx context.Context, product, version, reason string) ([]string, error) {
	return s.halt(ctx, product, version, product+"@"+version, "revoked: "+reason, false)
}

// halt halts the active or paused rollouts of a release; it audits the
// halt when always is set or when it stopped any rollout.
func (s *Rollouts) halt(ctx context.Context, product, version, rel, reason string, always bool) ([]string, error) {
	rs, err := s.ro.Rollouts(ctx, product)
	if err != nil {
		return nil, err
	}
	halted := []string{}
	for _, r := range rs {
		if r.Version != version || (r.State != string(rollout.Active) && r.State != string(rollout.Paused)) {
			continue
		}
		r.State, r.HaltReason = string(rollout.Halted), "emergency halt of "+rel+": "+reason
		if _, err := s.ro.UpdateRollout(ctx, r); err != nil {
			return halted, err
		}
		s.cache.forget(r.ID, r.Product)
		halted = append(halted, r.ID)
	}
	if always || len(halted) > 0 {
		s.rec.record(ctx, "release.halt", rel, map[string]any{"rollouts": halted, "reason": reason})
	}
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

func (s *Rollouts) planOf(ctx context.Context, id string) (state.Rollout, rollout.Plan, error) {
	r, err := s.ro.Rollout(ctx, id)
	if err != nil {
		return r, rollout.Plan{}, err
	}
	var p rollout.Plan
	return r, p, json.Unmarshal(r.Plan, &p)
}

// Approve records (or revokes) an approval.
func (s *Rollouts) Approve(ctx context.Context, id string, in api.Approval) error {
	by := audit.ActorFrom(ctx)
	if err := input.Text("comment", in.Comment, input.MaxComment); err != nil {
		return err
	}
	r, p, w, err := s.waveAtSite(ctx, id, in.Wave, in.Site)
	if err != nil {
		return err
	}
	if in.Revoke {
		prog, err := s.prog.Progress(ctx, id)
		if err != nil {
			return err
		}
		devs, err := s.reg.DevicesOf(ctx, p.Product)
		if err != nil {
			return err
		}
		siteOf := map[string]string{}
		for _, d := range devs {
			siteOf[d.ID] = d.Site
		}
		for _, pr := range prog {
			if pr.Wave == w && siteOf[pr.DeviceID] == in.Site {
				return apperr.New(apperr.Conflict, "devices at %s already started wave %s; pause or halt the rollout instead", in.Site, in.Wave).WithCode(api.CodeWaveStarted)
			}
		}
	}
	if err := s.ro.PutApproval(ctx, state.Approval{RolloutID: id, Wave: w, Site: in.Site, By: by, Comment: in.Comment, NotBefore: in.NotBefore, At: s.clock.Now(), Revoked: in.Revoke}); err != nil {
		return err
	}
	action := "rollout.approve"
	if in.Revoke {
		action = "rollout.approval_revoke"
	}
	s.rec.record(ctx, action, id, in)
	s.cache.forget(id, r.Product)
	return s.advance(ctx, id) // an approval can complete a wave with nothing left to do
}

// Defer records a site's deferral.
func (s *Rollouts) Defer(ctx context.Context, id string, in api.Deferral) error {
	r, _, w, err := s.waveAtSite(ctx, id, in.Wave, in.Site)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	if in.Reason == "" || !in.Until.After(now) {
		return apperr.New(apperr.Invalid, "a deferral needs a reason and an expiry in the future")
	}
	if err := input.Text("reason", in.Reason, input.MaxComment); err != nil {
		return err
	}
	if in.Until.After(now.Add(MaxDeferral)) {
		return apperr.New(apperr.Invalid, "a deferral lasts at most %s; defer again when it ends", MaxDeferral)
	}
	if err := s.ro.PutDeferral(ctx, state.Deferral{RolloutID: id, Wave: w, Site: in.Site, Reason: in.Reason, Until: in.Until}); err != nil {
		return err
	}
	s.rec.record(ctx, "rollout.defer", id, in)
	s.cache.forget(id, r.Product)
	return nil
}

// waveAtSite resolves a site's decision about one wave of a rollout: the
// operator may act for the site, the wave and the site exist.
func (s *Rollouts) waveAtSite(ctx context.Context, id, wave, site string) (state.Rollout, rollout.Plan, int, error) {
	if err := scoped(ctx, site); err != nil {
		return state.Rollout{}, rollout.Plan{}, 0, err
	}
	r, p, err := s.planOf(ctx, id)
	if err != nil {
		return r, p, 0, err
	}
	w, err := waveIndex(p, wave)
	if err != nil {
		return r, p, 0, err
	}
	return r, p, w, s.siteExists(ctx, site)
}

func (s *Rollouts) siteExists(ctx context.Context, name string) error {
	sites, err := s.reg.Sites(ctx)
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

// advance applies a rollout's automatic rules (halt, next wave) now. It
// decides on this replica's cached state when it is current, and stores
// the change with the rollout's revision, so replicas never both apply it.
func (s *Rollouts) advance(ctx context.Context, id string) error {
	r, err := s.ro.Rollout(ctx, id)
	if err != nil || r.State != string(rollout.Active) {
		return err
	}
	snap, err := s.cache.snapshot(ctx, r)
	if err != nil {
		return err
	}
	var change string
	s.cache.with(func() { change = snap.Advance(s.clock.Now()) })
	if change == "" {
		return nil
	}
	next := r
	s.cache.with(func() {
		next.State, next.CurrentWave, next.WaveOpened, next.HaltReason = string(snap.Rollout.State), snap.Rollout.CurrentWave, snap.Rollout.WaveOpened, snap.Rollout.HaltReason
	})
	stored, err := s.ro.UpdateRollout(ctx, next)
	if err != nil {
		s.cache.forget(id, r.Product) // the cached snapshot moved on; the database did not
		if apperr.Is(err, apperr.Conflict) {
			return nil // another replica advanced it first
		}
		return err
	}
	s.cache.forget(id, r.Product)
	s.cache.put(snap, stored.Revision)
	s.log.Info("rollout advanced", zap.String("rollout", id), zap.String("change", change))
	action := "rollout.wave_open"
	if next.State == string(rollout.Halted) {
		action = "rollout.halt"
	}
	s.rec.record(ctx, action, id, map[string]string{"change": change})
	return nil
}

// Evaluate applies the automatic rules to every active rollout (soak times
// end without any event). One replica runs it at a time (app: a lease).
func (s *Rollouts) Evaluate(ctx context.Context) {
	rs, err := s.ro.Rollouts(ctx, "")
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

// ProgressOf summarizes every rollout of a release (vigilance shows the
// fixing release's): state, eligible and committed devices, scoped to the
// caller's sites.
func (s *Rollouts) ProgressOf(ctx context.Context, product, version string) ([]api.RolloutProgress, error) {
	if err := s.cache.refresh(ctx); err != nil {
		return nil, err
	}
	rs, err := s.cache.rolloutsOf(ctx, product)
	if err != nil {
		return nil, err
	}
	p, scoped := operator.From(ctx)
	out := []api.RolloutProgress{}
	now := s.clock.Now()
	for _, r := range rs {
		if r.Version != version {
			continue
		}
		snap, err := s.cache.snapshot(ctx, r)
		if err != nil {
			return nil, err
		}
		rp := api.RolloutProgress{ID: r.ID, State: r.State}
		s.cache.with(func() {
			for _, c := range snap.Status(now) {
				if !scoped || p.CanSite(c.Site) {
					rp.Eligible += c.Eligible
					rp.Committed += c.Committed
				}
			}
		})
		out = append(out, rp)
	}
	return out, nil
}
