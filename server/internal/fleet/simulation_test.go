package fleet_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// The store-backed simulation: the same 10,000 devices at 5 sites as the
// rollout package's pure simulation, but through fleet.Service on a real
// database: check-ins, assignments, events and the controller, with an
// injected clock.
const (
	fullSimDevices = 10000
	raceSimDevices = 500
	simStep        = time.Hour
)

// simDevices is the fleet size: 10,000, or 500 under the race detector
// (make test runs both).
var simDevices = func() int {
	if raceEnabled {
		return raceSimDevices
	}
	return fullSimDevices
}()

var simSites = []string{"st-mary", "north", "east", "west", "south"}

type fixedTargets struct{}

func (fixedTargets) ReleaseTarget(context.Context, string, string) (string, string, error) {
	return "demo-pump/demo-pump-1.1.0.img", "security", nil
}

func (fixedTargets) ReleaseDeltas(context.Context, string, string) (map[string]string, error) {
	return map[string]string{"1.0.0": "demo-pump/demo-pump-1.1.0.img.from-1.0.0.vdelta"}, nil
}

type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type sim struct {
	t        *testing.T
	st       state.Store
	svc      *fleet.Fleet
	clock    *simClock
	devs     []state.Device
	assigned map[string]time.Time
	final    map[string]api.InstallState
	outcome  func(i int) api.InstallState
	maxSite  map[string]int
}

func newSim(t *testing.T, st state.Store) *sim {
	ctx := context.Background()
	c := &simClock{t: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
	svc := newFleet(st, fixedTargets{})
	svc.SetClock(c.now)
	for _, name := range simSites {
		in := api.Site{Name: name, TimeZone: "America/Chicago", SiteCap: 200, CareAreaCap: 25}
		if name == "east" {
			in.TimeZone = "Europe/Berlin"
			for _, d := range []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"} {
				in.Windows = append(in.Windows, d+" 01:00-05:00 Europe/Berlin")
			}
		}
		if err := svc.Registry.PutSite(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	s := &sim{t: t, st: st, svc: svc, clock: c, assigned: map[string]time.Time{}, final: map[string]api.InstallState{}, maxSite: map[string]int{},
		outcome: func(int) api.InstallState { return rollout.Committed }}
	var ins []api.Device
	for i := range simDevices {
		ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%05d", i), Product: "demo-pump", Hardware: "rev-b", Site: simSites[i%5],
			CareArea: fmt.Sprintf("ward-%d", (i/5)%10), PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
	}
	if err := svc.Registry.RegisterDevices(ctx, ins); err != nil {
		t.Fatal(err)
	}
	s.devs, _ = st.DevicesOf(ctx, "demo-pump")
	return s
}

func eventID(parts ...string) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts)))
	return hex.EncodeToString(h[:16])
}

// tick: every device checks in; devices assigned an hour ago report their
// outcome; the controller runs.
func (s *sim) tick() {
	ctx := context.Background()
	now := s.clock.now()
	for i, d := range s.devs {
		if _, done := s.final[d.ID]; done {
			continue
		}
		if at, ok := s.assigned[d.ID]; ok {
			if now.Sub(at) >= simStep {
				st := s.outcome(i)
				_, err := s.svc.Events.Ingest(ctx, d, api.EventBatch{Events: []api.DeviceEvent{{ID: eventID(d.ID, string(st)), DeviceID: d.ID,
					Target: "demo-pump/demo-pump-1.1.0.img", Version: "1.1.0", State: st, Time: now}}})
				if err != nil {
					s.t.Fatal(err)
				}
				s.final[d.ID] = st
			}
			continue
		}
		a, err := s.svc.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: now}, api.CheckIn{Installed: "1.0.0", State: api.StateIdle})
		if err != nil {
			s.t.Fatal(err)
		}
		if a != nil {
			s.assigned[d.ID] = now
			if d.Site == "east" && !(now.In(berlin).Hour() >= 1 && now.In(berlin).Hour() < 5) {
				s.t.Fatalf("%s at east assigned at %s, outside its windows", d.ID, now)
			}
		}
	}
	open := map[string]int{}
	for id := range s.assigned {
		if _, done := s.final[id]; !done {
			open[siteOf(id)]++
		}
	}
	for site, n := range open {
		s.maxSite[site] = max(s.maxSite[site], n)
	}
	s.svc.CheckIns.FlushLastSeen(ctx)
	s.svc.Rollouts.Evaluate(ctx)
	s.clock.add(simStep)
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

func siteOf(id string) string {
	var i int
	fmt.Sscanf(id, "PUMP-%d", &i)
	return simSites[i%5]
}

func (s *sim) approveAll(id string, sites ...string) {
	for _, site := range sites {
		for _, w := range []string{"canary", "pilot", "broad", "all"} {
			if err := s.svc.Rollouts.Approve(context.Background(), id, api.Approval{Wave: w, Site: site, Comment: "CHG"}); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

func runStoreSimulation(t *testing.T, st state.Store) {
	ctx := context.Background()
	s := newSim(t, st)
	ro, err := s.svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Select: "product=demo-pump,version<1.1.0",
		Waves: "canary:1%,pilot:10%,broad:50%,all:100%", Soak: "24h", Success: "95%", HaltOn: "failure>=5% min=20"})
	if err != nil {
		t.Fatal(err)
	}
	s.approveAll(ro.ID, "st-mary", "north", "east", "west") // south withholds
	for range 6 * 24 {
		s.tick()
	}
	got, _ := s.st.Rollout(ctx, ro.ID)
	if got.State != "active" || got.CurrentWave != 3 {
		t.Fatalf("after 6 days: state %s, wave %d", got.State, got.CurrentWave)
	}
	per := map[string]int{}
	for id := range s.assigned {
		per[siteOf(id)]++
	}
	if per["south"] != 0 {
		t.Fatalf("%d devices at south were assigned without its approval", per["south"])
	}
	for _, site := range []string{"st-mary", "north", "east", "west"} {
		if per[site] != simDevices/5 {
			t.Errorf("site %s: %d of %d devices updated", site, per[site], simDevices/5)
		}
		if s.maxSite[site] > 200 {
			t.Errorf("site %s had %d installing at once (cap 200)", site, s.maxSite[site])
		}
	}
	status, err := s.svc.Rollouts.Status(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	committed := 0
	for _, c := range status.Counts {
		committed += c.Committed
	}
	if committed != 4*simDevices/5 {
		t.Fatalf("status counts %d committed, want %d", committed, 4*simDevices/5)
	}

	// A second release that rolls back one in ten: it halts by itself.
	bad := newSim(t, freshStore(t))
	bad.outcome = func(i int) api.InstallState {
		if i%10 == 0 {
			return rollout.RolledBack
		}
		return rollout.Committed
	}
	// min scales with the fleet: 20 at 10,000 devices.
	ro2, err := bad.svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "canary:1%,pilot:10%,broad:50%,all:100%",
		Soak: "24h", Success: "95%", HaltOn: fmt.Sprintf("failure>=5%% min=%d", max(1, simDevices/500))})
	if err != nil {
		t.Fatal(err)
	}
	bad.approveAll(ro2.ID, simSites...)
	for range 4 * 24 {
		bad.tick()
	}
	got, _ = bad.st.Rollout(ctx, ro2.ID)
	if got.State != "halted" || got.HaltReason == "" {
		t.Fatalf("bad release: state %s, wave %d", got.State, got.CurrentWave)
	}
	n := len(bad.assigned)
	for range 24 {
		bad.tick()
	}
	if len(bad.assigned) != n {
		t.Fatalf("%d assignments after the halt", len(bad.assigned)-n)
	}
}

var freshStore func(t *testing.T) state.Store

func TestStoreBackedSimulationOnSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation skipped in -short mode")
	}
	freshStore = func(t *testing.T) state.Store {
		st, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "vigil.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	runStoreSimulation(t, freshStore(t))
}

func TestStoreBackedSimulationOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation skipped in -short mode")
	}
	freshStore = func(t *testing.T) state.Store {
		st, err := sqlstore.Open(context.Background(), testsvc.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	runStoreSimulation(t, freshStore(t))
}
