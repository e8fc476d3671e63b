package rollout

import (
	"fmt"
	"sort"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// State is a rollout's lifecycle state.
type State string

// Rollout states.
const (
	Active  State = "active"
	Paused  State = "paused"
	Halted  State = "halted"
	Aborted State = "aborted"
)

// Device progress states: "assigned" (the server handed out the release)
// and the agent's reported install states (api.InstallState).
const (
	Assigned   = api.StateAssigned
	Deferred   = api.StateDeferred
	Committed  = api.StateCommitted
	RolledBack = api.StateRolledBack
	Failed     = api.StateFailed
)

// Rollout is a plan being carried out.
type Rollout struct {
	ID          string    `json:"id"`
	Plan        Plan      `json:"plan"`
	Target      string    `json:"target"`
	State       State     `json:"state"`
	CurrentWave int       `json:"current_wave"`
	WaveOpened  time.Time `json:"wave_opened"`
	HaltReason  string    `json:"halt_reason,omitempty"`
	Created     time.Time `json:"created"`
}

// Approval is hospital IT's go-ahead for one wave at one site.
type Approval struct {
	Wave      int
	Site      string
	By        string
	Comment   string
	NotBefore time.Time
	At        time.Time
	Revoked   bool
}

// Deferral is a site's "not now" for one wave, until a time.
type Deferral struct {
	Wave   int
	Site   string
	Reason string
	Until  time.Time
}

// Progress is one device's place in a rollout.
type Progress struct {
	DeviceID string
	Wave     int
	State    api.InstallState
	Updated  time.Time
}

// Snapshot is everything a decision needs, read at one moment.
type Snapshot struct {
	Rollout   *Rollout
	Sites     map[string]*Site
	Devices   map[string]Device // the product's devices
	Approvals []Approval
	Deferrals []Deferral
	Progress  map[string]*Progress // by device id

	// Derived, built on first use (one pass over the devices) and kept
	// current by SetProgress, so that decisions, status and the rules cost
	// O(waves × sites), not O(devices) (docs/security.md, finding 14).
	prepared       bool
	siteInstalling map[string]int
	areaInstalling map[[2]string]int
	waves          map[string]int
	cells          map[cellKey]*Counts // per wave and site, over s.Devices
	finished       int                 // attempts that ended, over s.Progress
	failed         int                 // of which failed or rolled back
}

type cellKey struct {
	wave int
	site string
}

// Devices, Sites' names and the rollout's plan must not change once the
// snapshot is in use; approvals, deferrals and site policies may.
func (s *Snapshot) prepare() {
	if s.prepared {
		return
	}
	s.prepared = true
	s.siteInstalling = map[string]int{}
	s.areaInstalling = map[[2]string]int{}
	s.cells = map[cellKey]*Counts{}
	s.finished, s.failed = 0, 0
	if s.waves == nil {
		s.waves = map[string]int{}
	}
	if s.Progress == nil {
		s.Progress = map[string]*Progress{}
	}
	for id, p := range s.Progress {
		s.count(id, p.State, +1)
	}
	for id, d := range s.Devices {
		p := s.Progress[id]
		if p == nil && !s.Rollout.Plan.Select.Matches(d) {
			continue
		}
		c := s.cell(s.WaveOfDevice(id), d.Site)
		c.Eligible++
		if p != nil {
			c.Assigned++
			add(c, p.State, +1)
		}
	}
}

func (s *Snapshot) cell(wave int, site string) *Counts {
	k := cellKey{wave, site}
	c, ok := s.cells[k]
	if !ok {
		c = &Counts{Wave: s.Rollout.Plan.Waves[wave].Name, Site: site}
		s.cells[k] = c
	}
	return c
}

// add moves the per-state count of one device.
func add(c *Counts, state api.InstallState, delta int) {
	switch state {
	case Committed:
		c.Committed += delta
	case RolledBack:
		c.RolledBack += delta
	case Failed:
		c.Failed += delta
	case Deferred:
		c.Deferred += delta
	default:
		c.Installing += delta
	}
}

// count keeps the installing counters (caps) and the attempt totals (halt
// rule) for one device's state.
func (s *Snapshot) count(id string, state api.InstallState, delta int) {
	if state.Final() {
		s.finished += delta
		if state.Failure() {
			s.failed += delta
		}
		return
	}
	d, ok := s.Devices[id]
	if !ok {
		return
	}
	s.siteInstalling[d.Site] += delta
	if d.CareArea != "" {
		s.areaInstalling[[2]string{d.Site, d.CareArea}] += delta
	}
}

// WaveOfDevice is the device's wave index in this rollout (memoised).
func (s *Snapshot) WaveOfDevice(id string) int {
	s.prepare()
	w, ok := s.waves[id]
	if !ok {
		w = WaveOf(s.Rollout.Plan.Waves, Bucket(s.Rollout.ID, id))
		s.waves[id] = w
	}
	return w
}

// ReplaceProgress swaps in freshly read progress (another replica may have
// assigned devices) and rebuilds the counters.
func (s *Snapshot) ReplaceProgress(p map[string]*Progress) {
	s.Progress = p
	s.prepared = false
	s.prepare()
}

// Unassign takes back an assignment this replica recorded in the snapshot
// but could not store (the database refused): the device is as before.
func (s *Snapshot) Unassign(id string) {
	s.prepare()
	p, ok := s.Progress[id]
	if !ok || p.State != Assigned {
		return
	}
	s.count(id, p.State, -1)
	if d, known := s.Devices[id]; known {
		c := s.cell(s.WaveOfDevice(id), d.Site)
		add(c, p.State, -1)
		c.Assigned--
		if !s.Rollout.Plan.Select.Matches(d) {
			c.Eligible--
		}
	}
	delete(s.Progress, id)
}

// SetProgress records a device's new state in the snapshot, keeping the
// installing counters current.
func (s *Snapshot) SetProgress(id string, state api.InstallState, now time.Time) {
	s.prepare()
	d, known := s.Devices[id]
	var c *Counts
	if known {
		c = s.cell(s.WaveOfDevice(id), d.Site)
	}
	if p, ok := s.Progress[id]; ok {
		s.count(id, p.State, -1)
		if c != nil {
			add(c, p.State, -1)
		}
		p.State, p.Updated = state, now
	} else {
		if c != nil {
			if !s.Rollout.Plan.Select.Matches(d) {
				c.Eligible++ // counted from now on, as it has progress
			}
			c.Assigned++
		}
		s.Progress[id] = &Progress{DeviceID: id, Wave: s.WaveOfDevice(id), State: state, Updated: now}
	}
	s.count(id, state, +1)
	if c != nil {
		add(c, state, +1)
	}
}

// Assignment tells a device what to install and within which times.
type Assignment struct {
	RolloutID string    `json:"rollout_id"`
	Target    string    `json:"target"`
	Version   string    `json:"version"`
	Wave      string    `json:"wave"`
	NotBefore time.Time `json:"not_before"`
	WindowEnd time.Time `json:"window_end,omitempty"`
}

// approved reports whether site approved wave at now, and a reason if not.
func (s *Snapshot) approved(wave int, site *Site, now time.Time) (bool, string) {
	for _, d := range s.Deferrals {
		if d.Wave == wave && d.Site == site.Name && now.Before(d.Until) {
			return false, fmt.Sprintf("site %s deferred wave %s until %s: %s", site.Name, s.Rollout.Plan.Waves[wave].Name, d.Until.Format(time.RFC3339), d.Reason)
		}
	}
	if site.AutoApproves(s.Rollout.Plan.Severity) {
		return true, ""
	}
	for _, a := range s.Approvals {
		if a.Wave == wave && a.Site == site.Name && !a.Revoked {
			if now.Before(a.NotBefore) {
				return false, fmt.Sprintf("site %s approved wave %s from %s", site.Name, s.Rollout.Plan.Waves[wave].Name, a.NotBefore.Format(time.RFC3339))
			}
			return true, ""
		}
	}
	return false, fmt.Sprintf("site %s has not approved wave %s", site.Name, s.Rollout.Plan.Waves[wave].Name)
}

// installing counts devices with an unfinished assignment at a site, and in
// one of its care areas.
func (s *Snapshot) installing(site, careArea string) (atSite, inArea int) {
	s.prepare()
	return s.siteInstalling[site], s.areaInstalling[[2]string{site, careArea}]
}

// Decide answers a device's check-in: the assignment it may act on now, or
// nil and why not. A device with an unfinished assignment gets the same
// assignment again, so a replayed check-in is harmless.
func (s *Snapshot) Decide(now time.Time, d Device) (*Assignment, string) {
	s.prepare()
	r := s.Rollout
	if r.State != Active {
		return nil, fmt.Sprintf("rollout %s is %s", r.ID, r.State)
	}
	if !r.Plan.Select.Matches(d) {
		if p := s.Progress[d.ID]; p != nil && !p.State.Final() {
			// An assigned device keeps its assignment even after it
			// reports progress; selection applies to new hand-outs.
		} else {
			return nil, "not selected"
		}
	}
	wave := s.WaveOfDevice(d.ID)
	if p := s.Progress[d.ID]; p != nil {
		if p.State.Final() {
			return nil, "already " + string(p.State)
		}
		return s.assignment(wave, d, now), ""
	}
	if wave > r.CurrentWave {
		return nil, fmt.Sprintf("device is in wave %s; wave %s is open", r.Plan.Waves[wave].Name, r.Plan.Waves[r.CurrentWave].Name)
	}
	site, ok := s.Sites[d.Site]
	if !ok {
		return nil, fmt.Sprintf("device's site %q is unknown", d.Site)
	}
	if ok, why := s.approved(wave, site, now); !ok {
		return nil, why
	}
	if !site.InWindow(now) {
		return nil, fmt.Sprintf("outside the maintenance windows of site %s", site.Name)
	}
	atSite, inArea := s.installing(site.Name, d.CareArea)
	if site.SiteCap > 0 && atSite >= site.SiteCap {
		return nil, fmt.Sprintf("site %s already has %d devices installing (cap %d)", site.Name, atSite, site.SiteCap)
	}
	if site.CareAreaCap > 0 && d.CareArea != "" && inArea >= site.CareAreaCap {
		return nil, fmt.Sprintf("care area %s already has %d devices installing (cap %d)", d.CareArea, inArea, site.CareAreaCap)
	}
	return s.assignment(wave, d, now), ""
}

func (s *Snapshot) assignment(wave int, d Device, now time.Time) *Assignment {
	a := &Assignment{RolloutID: s.Rollout.ID, Target: s.Rollout.Target, Version: s.Rollout.Plan.Version, Wave: s.Rollout.Plan.Waves[wave].Name, NotBefore: now}
	if site, ok := s.Sites[d.Site]; ok {
		a.WindowEnd = site.windowEnd(now)
	}
	return a
}

// windowEnd is when the window containing t closes (zero without windows).
func (s *Site) windowEnd(t time.Time) time.Time {
	for _, w := range s.Windows {
		if !w.Contains(t) {
			continue
		}
		local := t.In(w.Location)
		midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, w.Location)
		since := local.Sub(midnight)
		if w.Start > w.End && since >= w.Start { // crosses midnight: ends tomorrow
			return midnight.AddDate(0, 0, 1).Add(w.End)
		}
		return midnight.Add(w.End)
	}
	return time.Time{}
}

// Counts are the numbers status shows for one wave at one site.
type Counts = api.WaveCounts

// Status counts devices per wave and site, in wave then site order.
func (s *Snapshot) Status(now time.Time) []Counts {
	s.prepare()
	keys := make([]cellKey, 0, len(s.cells))
	for k, c := range s.cells {
		if c.Eligible > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].wave != keys[j].wave {
			return keys[i].wave < keys[j].wave
		}
		return keys[i].site < keys[j].site
	})
	out := make([]Counts, 0, len(keys))
	for _, k := range keys {
		c := *s.cells[k]
		c.Approved = false
		if st, ok := s.Sites[k.site]; ok {
			c.Approved, _ = s.approved(k.wave, st, now)
		}
		out = append(out, c)
	}
	return out
}

// WaitingFor names, in order, the sites a rollout is waiting on: they hold
// selected devices of an open wave (the current one or an earlier one) with
// no assignment yet, and have not approved that wave (or deferred it).
// Empty when no site holds the rollout up.
func (s *Snapshot) WaitingFor(now time.Time) []string {
	r := s.Rollout
	if r.State != Active {
		return nil
	}
	s.prepare()
	need := map[string]bool{}
	for k, c := range s.cells {
		if k.wave > r.CurrentWave || c.Eligible-c.Assigned == 0 || need[k.site] {
			continue
		}
		if site, ok := s.Sites[k.site]; ok {
			if ok, _ := s.approved(k.wave, site, now); !ok {
				need[k.site] = true
			}
		}
	}
	out := make([]string, 0, len(need))
	for site := range need {
		out = append(out, site)
	}
	sort.Strings(out)
	return out
}

// Advance applies the automatic rules at now: halt on the failure rule, or
// open the next wave when the current one succeeded and soaked. It returns
// a description of what changed ("" when nothing did).
func (s *Snapshot) Advance(now time.Time) string {
	r := s.Rollout
	if r.State != Active {
		return ""
	}
	s.prepare()
	attempts, failures := s.finished, s.failed
	h := r.Plan.Halt
	if attempts >= h.MinAttempts && float64(failures) >= h.FailureRate*float64(attempts) {
		r.State = Halted
		r.HaltReason = fmt.Sprintf("halted automatically: %d of %d finished installs failed or rolled back (%.1f%%), reaching the rule failure>=%g%% min=%d",
			failures, attempts, 100*float64(failures)/float64(attempts), h.FailureRate*100, h.MinAttempts)
		return r.HaltReason
	}
	if r.CurrentWave >= len(r.Plan.Waves)-1 || now.Sub(r.WaveOpened) < r.Plan.Soak {
		return ""
	}
	if !s.waveSucceeded(r.CurrentWave, now) {
		return ""
	}
	r.CurrentWave++
	r.WaveOpened = now
	return fmt.Sprintf("wave %s opened", r.Plan.Waves[r.CurrentWave].Name)
}

// waveSucceeded: of the wave's devices at sites that approved it, at least
// the success share committed. A wave without devices succeeds at once, and
// so does one whose approving sites hold none of its devices; a wave no site
// approved does not, so a rollout never spreads past an unapproved step.
func (s *Snapshot) waveSucceeded(wave int, now time.Time) bool {
	r := s.Rollout
	s.prepare()
	anyApproved := false
	for _, site := range s.Sites {
		if ok, _ := s.approved(wave, site, now); ok {
			anyApproved = true
			break
		}
	}
	members, approvedMembers, committed := 0, 0, 0
	for k, c := range s.cells {
		if k.wave != wave {
			continue
		}
		members += c.Eligible
		site, ok := s.Sites[k.site]
		if !ok {
			continue
		}
		if ok, _ := s.approved(wave, site, now); ok {
			approvedMembers += c.Eligible
		} else {
			approvedMembers += c.Assigned // started before an approval was revoked
		}
		committed += c.Committed
	}
	if members == 0 {
		return true
	}
	if approvedMembers == 0 {
		return anyApproved
	}
	return float64(committed) >= r.Plan.Success*float64(approvedMembers)
}
