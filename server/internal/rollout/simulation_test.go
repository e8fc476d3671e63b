package rollout_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/rollout"
)

// The simulated fleet: 10,000 devices of demo-pump across 5 sites with 10
// care areas each, all at 1.0.0.
const (
	fleetSize    = 10000
	siteCount    = 5
	areasPerSite = 10
	step         = 30 * time.Minute
	// installTime is how long an assigned device takes to report its end.
	installTime = time.Hour
)

var siteNames = []string{"st-mary", "north", "east", "west", "south"}

// start is a Sunday, 00:00 UTC.
var start = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

func fleet() map[string]rollout.Device {
	devs := map[string]rollout.Device{}
	for i := range fleetSize {
		site := siteNames[i%siteCount]
		id := fmt.Sprintf("PUMP-%05d", i)
		devs[id] = rollout.Device{ID: id, Product: "demo-pump", Hardware: "rev-b", Site: site,
			CareArea: fmt.Sprintf("ward-%d", (i/siteCount)%areasPerSite), Installed: "1.0.0"}
	}
	return devs
}

func mustWindow(t testing.TB, s string) rollout.Window {
	w, err := rollout.ParseWindow(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func plan(t testing.TB, severity, halt string) rollout.Plan {
	waves, err := rollout.ParseWaves("canary:1%,pilot:10%,broad:50%,all:100%")
	if err != nil {
		t.Fatal(err)
	}
	h, err := rollout.ParseHaltRule(halt)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := rollout.ParseSelection("product=demo-pump,hardware=rev-b,version<1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	p := rollout.Plan{Product: "demo-pump", Version: "1.1.0", Severity: severity, Select: sel, Waves: waves, Soak: 24 * time.Hour, Success: 0.95, Halt: h}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// world is the simulation: the snapshot a server replica would hold, the
// clock, and what happened.
type world struct {
	t          testing.TB
	snap       *rollout.Snapshot
	now        time.Time
	assignedAt map[string]time.Time
	outcome    func(id string) api.InstallState // final state a device reports
	deferUntil map[string]time.Time             // devices in clinical use until
	maxSite    map[string]int
	maxArea    map[string]int
	events     []string
}

func newWorld(t testing.TB, p rollout.Plan, sites map[string]*rollout.Site, approvals []rollout.Approval) *world {
	r := &rollout.Rollout{ID: "ro-sim-1", Plan: p, Target: "demo-pump/demo-pump-1.1.0.img", State: rollout.Active, WaveOpened: start, Created: start}
	return &world{t: t, now: start,
		snap:       &rollout.Snapshot{Rollout: r, Sites: sites, Devices: fleet(), Approvals: approvals, Progress: map[string]*rollout.Progress{}},
		assignedAt: map[string]time.Time{}, deferUntil: map[string]time.Time{},
		maxSite: map[string]int{}, maxArea: map[string]int{},
		outcome: func(string) api.InstallState { return rollout.Committed },
	}
}

// tick advances the world by one step: the controller's rules, every
// device's check-in, and device progress.
func (w *world) tick() {
	if ev := w.snap.Advance(w.now); ev != "" {
		w.events = append(w.events, w.now.Format(time.RFC3339)+" "+ev)
	}
	for id, d := range w.snap.Devices {
		if p := w.snap.Progress[id]; p != nil {
			switch {
			case p.State.Final():
			case w.now.Before(w.deferUntil[id]):
				if p.State != rollout.Deferred {
					w.snap.SetProgress(id, rollout.Deferred, w.now)
				}
			case w.now.Sub(w.assignedAt[id]) >= installTime:
				w.snap.SetProgress(id, w.outcome(id), w.now)
			}
			continue
		}
		a, _ := w.snap.Decide(w.now, d)
		if a == nil {
			continue
		}
		w.check(d)
		w.snap.SetProgress(id, rollout.Assigned, w.now)
		w.assignedAt[id] = w.now
	}
	w.measureCaps()
	w.now = w.now.Add(step)
}

// check asserts the safety rules for a device about to be assigned.
func (w *world) check(d rollout.Device) {
	site := w.snap.Sites[d.Site]
	if !site.InWindow(w.now) {
		w.t.Fatalf("%s assigned at %s, outside the windows of %s", d.ID, w.now, d.Site)
	}
	wave := w.snap.WaveOfDevice(d.ID)
	if wave > w.snap.Rollout.CurrentWave {
		w.t.Fatalf("%s of wave %d assigned while wave %d is open", d.ID, wave, w.snap.Rollout.CurrentWave)
	}
	if w.snap.Rollout.State != rollout.Active {
		w.t.Fatalf("%s assigned while the rollout is %s", d.ID, w.snap.Rollout.State)
	}
}

func (w *world) measureCaps() {
	site, area := map[string]int{}, map[string]int{}
	for id, p := range w.snap.Progress {
		if p.State.Final() {
			continue
		}
		d := w.snap.Devices[id]
		site[d.Site]++
		area[d.Site+"/"+d.CareArea]++
	}
	for k, v := range site {
		w.maxSite[k] = max(w.maxSite[k], v)
	}
	for k, v := range area {
		w.maxArea[k] = max(w.maxArea[k], v)
	}
}

func (w *world) run(d time.Duration) {
	for end := w.now.Add(d); w.now.Before(end); {
		w.tick()
	}
}

func standardSites(t testing.TB) map[string]*rollout.Site {
	sites := map[string]*rollout.Site{}
	for _, n := range siteNames {
		sites[n] = &rollout.Site{Name: n, SiteCap: 200, CareAreaCap: 25}
	}
	// east installs only at night, Berlin time.
	for _, day := range []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"} {
		sites["east"].Windows = append(sites["east"].Windows, mustWindow(t, day+" 01:00-05:00 Europe/Berlin"))
	}
	return sites
}

func approveAll(sites []string, waves int, notBefore time.Time) []rollout.Approval {
	var out []rollout.Approval
	for _, s := range sites {
		for w := range waves {
			out = append(out, rollout.Approval{Wave: w, Site: s, By: "it@" + s, NotBefore: notBefore, At: start})
		}
	}
	return out
}

func TestSimulationWaveSizesMembershipApprovalsWindowsAndCaps(t *testing.T) {
	p := plan(t, "security", "failure>=5% min=20")
	sites := standardSites(t)
	// south never approves; west approves a day and a half late.
	approvals := append(approveAll([]string{"st-mary", "north", "east"}, 4, start), approveAll([]string{"west"}, 4, start.Add(36*time.Hour))...)
	w := newWorld(t, p, sites, approvals)

	// Wave sizes: each wave's share of the fleet within ±1 % of the fleet.
	sizes := make([]int, len(p.Waves))
	for id := range w.snap.Devices {
		sizes[w.snap.WaveOfDevice(id)]++
	}
	prev := 0.0
	for i, wv := range p.Waves {
		want := (wv.Share - prev) * fleetSize
		prev = wv.Share
		if math.Abs(float64(sizes[i])-want) > 0.01*fleetSize {
			t.Errorf("wave %s has %d devices, want %.0f ± %d", wv.Name, sizes[i], want, fleetSize/100)
		}
	}
	// Membership is stable: a fresh snapshot (another replica, a restart)
	// puts every device in the same wave.
	other := &rollout.Snapshot{Rollout: w.snap.Rollout, Devices: w.snap.Devices}
	for id := range w.snap.Devices {
		if other.WaveOfDevice(id) != w.snap.WaveOfDevice(id) {
			t.Fatalf("%s changed wave between replicas", id)
		}
	}

	w.run(8 * 24 * time.Hour)

	if w.snap.Rollout.CurrentWave != len(p.Waves)-1 {
		t.Fatalf("after 8 days the rollout is at wave %d; events:\n%v", w.snap.Rollout.CurrentWave, w.events)
	}
	perSite := map[string]int{}
	for id := range w.snap.Progress {
		perSite[w.snap.Devices[id].Site]++
	}
	if perSite["south"] != 0 {
		t.Fatalf("%d devices at south got the release without its approval", perSite["south"])
	}
	for _, s := range []string{"st-mary", "north", "east", "west"} {
		if perSite[s] != fleetSize/siteCount {
			t.Errorf("site %s: %d of %d devices updated", s, perSite[s], fleetSize/siteCount)
		}
	}
	for site, n := range w.maxSite {
		if n > sites[site].SiteCap {
			t.Errorf("site %s had %d installing at once (cap %d)", site, n, sites[site].SiteCap)
		}
	}
	for area, n := range w.maxArea {
		if n > 25 {
			t.Errorf("care area %s had %d installing at once (cap 25)", area, n)
		}
	}
	// west approved late: none of its devices before the not-before time.
	for id, at := range w.assignedAt {
		if w.snap.Devices[id].Site == "west" && at.Before(start.Add(36*time.Hour)) {
			t.Fatalf("%s at west assigned at %s, before its approval took effect", id, at)
		}
	}
	if w.snap.Rollout.State != rollout.Active {
		t.Fatalf("a healthy rollout ended %s: %s", w.snap.Rollout.State, w.snap.Rollout.HaltReason)
	}
	t.Logf("events: %v", w.events)
}

func TestSimulationAutoHaltsAtTheFailureThreshold(t *testing.T) {
	p := plan(t, "security", "failure>=5% min=20")
	w := newWorld(t, p, standardSites(t), approveAll(siteNames, 4, start))
	// One in ten installs rolls back: 10 % ≥ 5 %.
	n := 0
	w.outcome = func(string) api.InstallState {
		n++
		if n%10 == 0 {
			return rollout.RolledBack
		}
		return rollout.Committed
	}
	// Let the canary finish and the pilot open, then expect a halt.
	w.run(6 * 24 * time.Hour)
	r := w.snap.Rollout
	if r.State != rollout.Halted || r.HaltReason == "" {
		t.Fatalf("rollout %s after 10 %% rollbacks; events %v", r.State, w.events)
	}
	finished, failed := 0, 0
	for _, p := range w.snap.Progress {
		if p.State.Final() {
			finished++
			if p.State.Failure() {
				failed++
			}
		}
	}
	if finished < 20 {
		t.Fatalf("halted after %d finished installs; the rule needs 20", finished)
	}
	assigned := len(w.snap.Progress)
	w.run(2 * 24 * time.Hour)
	if len(w.snap.Progress) != assigned {
		t.Fatalf("%d new assignments after the halt", len(w.snap.Progress)-assigned)
	}
	t.Logf("%s", r.HaltReason)
}

func TestSimulationDeferralsNeverHalt(t *testing.T) {
	p := plan(t, "security", "failure>=5% min=20")
	w := newWorld(t, p, standardSites(t), approveAll(siteNames, 4, start))
	// Half the fleet is in clinical use for the first two days.
	for id := range w.snap.Devices {
		if id[len(id)-1]%2 == 0 {
			w.deferUntil[id] = start.Add(48 * time.Hour)
		}
	}
	w.run(3 * 24 * time.Hour)
	if w.snap.Rollout.State != rollout.Active {
		t.Fatalf("deferrals halted the rollout: %s", w.snap.Rollout.HaltReason)
	}
	deferredSeen := false
	for _, c := range w.snap.Status(w.now) {
		if c.Deferred > 0 || c.Committed > 0 {
			deferredSeen = true
		}
	}
	if !deferredSeen {
		t.Fatal("nothing was installed or deferred")
	}
}

func TestSiteDeferralAndRevokedApprovalStopHandOuts(t *testing.T) {
	p := plan(t, "routine", "failure>=5% min=20")
	approvals := approveAll([]string{"north"}, 4, start)
	w := newWorld(t, p, standardSites(t), approvals)
	var dev rollout.Device
	for id, d := range w.snap.Devices {
		if d.Site == "north" && w.snap.WaveOfDevice(id) == 0 {
			dev = d
			break
		}
	}
	if a, why := w.snap.Decide(start, dev); a == nil {
		t.Fatalf("approved canary device refused: %s", why)
	}
	w.snap.Deferrals = []rollout.Deferral{{Wave: 0, Site: "north", Reason: "Joint Commission survey this week", Until: start.Add(7 * 24 * time.Hour)}}
	if a, why := w.snap.Decide(start, dev); a != nil || why == "" {
		t.Fatal("a deferred site got an assignment")
	}
	w.snap.Deferrals = nil
	for i := range w.snap.Approvals {
		w.snap.Approvals[i].Revoked = true
	}
	if a, _ := w.snap.Decide(start, dev); a != nil {
		t.Fatal("a revoked approval still hands out assignments")
	}
	// Standing policy: a site that auto-approves critical patches needs no person.
	w.snap.Sites["north"].AutoApprove = []string{"critical"}
	w.snap.Rollout.Plan.Severity = "critical"
	if a, why := w.snap.Decide(start, dev); a == nil {
		t.Fatalf("auto-approve policy ignored: %s", why)
	}
}
