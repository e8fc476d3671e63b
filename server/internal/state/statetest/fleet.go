package statetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

func runFleet(t *testing.T, one func(t *testing.T) state.Store) {
	t.Run("SitesAndDevicesRegisterAllOrNothing", func(t *testing.T) { testRegistry(t, one(t)) })
	t.Run("ReplayedNoncesAreRefused", func(t *testing.T) { testNonces(t, one(t)) })
	t.Run("RolloutsApprovalsDeferralsProgress", func(t *testing.T) { testRollouts(t, one(t)) })
}

func testRegistry(t *testing.T, s state.Store) {
	ctx := t.Context()
	e0, _ := s.FleetEpoch(ctx)
	site := state.Site{Name: "st-mary", TimeZone: "America/Chicago", Windows: []string{"Sun 02:00-05:00 America/Chicago"}, CareAreas: []string{"icu", "ward-3"}, SiteCap: 10, CareAreaCap: 2, AutoApprove: []string{"critical"}}
	if err := s.PutSite(ctx, site); err != nil {
		t.Fatal(err)
	}
	site.SiteCap = 12
	if err := s.PutSite(ctx, site); err != nil {
		t.Fatal(err)
	}
	sites, err := s.Sites(ctx)
	if err != nil || len(sites) != 1 || sites[0].SiteCap != 12 || len(sites[0].Windows) != 1 || sites[0].AutoApprove[0] != "critical" {
		t.Fatalf("sites %+v %v", sites, err)
	}
	if e1, _ := s.FleetEpoch(ctx); e1 <= e0 {
		t.Fatal("a site change did not move the fleet epoch")
	}
	dev := func(id string) state.Device {
		return state.Device{ID: id, Product: "demo-pump", Hardware: "rev-b", Site: "st-mary", CareArea: "icu", Tags: []string{"ward-3", "pilot"}, PublicKey: "AAAA", Installed: "1.0.0"}
	}
	if err := s.AddDevices(ctx, []state.Device{dev("PUMP-1"), dev("PUMP-2")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDevices(ctx, []state.Device{dev("PUMP-3"), dev("PUMP-1")}); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("duplicate device: %v", err)
	}
	if _, err := s.Device(ctx, "PUMP-3"); !apperr.Is(err, apperr.NotFound) {
		t.Fatal("a batch with a duplicate added some devices")
	}
	bad := dev("PUMP-4")
	bad.Site = "nowhere"
	if err := s.AddDevices(ctx, []state.Device{bad}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("unknown site: %v", err)
	}
	got, err := s.Device(ctx, "PUMP-2")
	if err != nil || got.Tags[1] != "pilot" || got.PublicKey != "AAAA" || got.Decommissioned {
		t.Fatalf("device %+v %v", got, err)
	}
	signed := time.Now().Truncate(time.Millisecond)
	if err := s.TouchDevices(ctx, []state.Touch{{DeviceID: "PUMP-2", Installed: "1.1.0", Seen: time.Now(), SignedAt: signed}}); err != nil {
		t.Fatal(err)
	}
	// A replayed older check-in changes nothing (finding 7).
	if err := s.TouchDevices(ctx, []state.Touch{{DeviceID: "PUMP-2", Installed: "1.0.0", Seen: time.Now(), SignedAt: signed.Add(-time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Device(ctx, "PUMP-2"); got.Installed != "1.1.0" || !got.LastCheckIn.Equal(signed) {
		t.Fatalf("an older check-in rewrote the device: %+v", got)
	}
	if err := s.Decommission(ctx, "PUMP-2"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Device(ctx, "PUMP-2")
	if !got.Decommissioned || got.PublicKey != "" || got.Installed != "1.1.0" {
		t.Fatalf("after decommission: %+v", got)
	}
	if err := s.Decommission(ctx, "PUMP-9"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("decommission unknown: %v", err)
	}
	all, _ := s.DevicesOf(ctx, "demo-pump")
	if len(all) != 2 {
		t.Fatalf("devices of demo-pump: %d", len(all))
	}
}

func testNonces(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now()
	if err := s.UseNonce(ctx, "PUMP-1", "n1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "PUMP-1", "n1", now, now.Add(time.Minute)); !apperr.Is(err, apperr.Unauthorized) {
		t.Fatalf("replay: %v", err)
	}
	if err := s.UseNonce(ctx, "PUMP-2", "n1", now, now.Add(time.Minute)); err != nil {
		t.Fatalf("same nonce, other device: %v", err)
	}
	// After expiry the nonce is forgotten (the timestamp check refuses such
	// old requests anyway).
	if err := s.UseNonce(ctx, "PUMP-1", "n1", now.Add(2*time.Minute), now.Add(3*time.Minute)); err != nil {
		t.Fatalf("expired nonce: %v", err)
	}
}

func testRollouts(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	r := state.Rollout{ID: "ro-1", Product: "demo-pump", Version: "1.1.0", Target: "demo-pump/x.img", Plan: []byte(`{"a":1}`), State: "active", WaveOpened: now, Created: now}
	if err := s.CreateRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rollout(ctx, "ro-1")
	if err != nil || got.Revision != 1 || string(got.Plan) != `{"a":1}` || !got.WaveOpened.Equal(now) {
		t.Fatalf("rollout %+v %v", got, err)
	}
	got.CurrentWave = 1
	upd, err := s.UpdateRollout(ctx, got)
	if err != nil || upd.Revision != 2 {
		t.Fatalf("update %+v %v", upd, err)
	}
	if _, err := s.UpdateRollout(ctx, got); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("stale update: %v", err)
	}
	if list, _ := s.Rollouts(ctx, "demo-pump"); len(list) != 1 || list[0].CurrentWave != 1 {
		t.Fatalf("rollouts %+v", list)
	}
	a := state.Approval{RolloutID: "ro-1", Wave: 0, Site: "st-mary", By: "it-1", Comment: "ok", At: now}
	s.PutApproval(ctx, a)
	a.Revoked = true
	s.PutApproval(ctx, a)
	if as, _ := s.Approvals(ctx, "ro-1"); len(as) != 1 || !as[0].Revoked {
		t.Fatalf("approvals %+v", as)
	}
	s.PutDeferral(ctx, state.Deferral{RolloutID: "ro-1", Wave: 1, Site: "st-mary", Reason: "survey", Until: now.Add(time.Hour)})
	if ds, _ := s.Deferrals(ctx, "ro-1"); len(ds) != 1 || ds[0].Reason != "survey" {
		t.Fatalf("deferrals %+v", ds)
	}
	p := state.Progress{RolloutID: "ro-1", DeviceID: "PUMP-1", Wave: 0, State: "assigned", Updated: now}
	if ok, err := s.SetProgress(ctx, p, true); !ok || err != nil {
		t.Fatalf("first assignment: %v %v", ok, err)
	}
	if ok, _ := s.SetProgress(ctx, p, true); ok {
		t.Fatal("a device was assigned twice")
	}
	p.State = "committed"
	s.SetProgress(ctx, p, false)
	if ps, _ := s.Progress(ctx, "ro-1"); len(ps) != 1 || ps[0].State != "committed" {
		t.Fatalf("progress %+v", ps)
	}
	// Changed rows by the database's clock: a later write is found after
	// the clock reading of an earlier read; nothing is newer than the future.
	all, dbNow, err := s.ProgressChanged(ctx, "ro-1", 0)
	if err != nil || len(all) != 1 || dbNow < time.Now().Add(-time.Hour).UnixMilli() {
		t.Fatalf("progress changed since 0: %+v, clock %d, %v", all, dbNow, err)
	}
	s.SetProgress(ctx, state.Progress{RolloutID: "ro-1", DeviceID: "PUMP-2", State: "assigned", Updated: now}, true)
	changed, _, err := s.ProgressChanged(ctx, "ro-1", dbNow)
	if err != nil || len(changed) == 0 || changed[len(changed)-1].DeviceID != "PUMP-2" {
		t.Fatalf("progress changed since the last read: %+v %v", changed, err)
	}
	if none, _, _ := s.ProgressChanged(ctx, "ro-1", dbNow+int64(time.Hour/time.Millisecond)); len(none) != 0 {
		t.Fatalf("rows changed in the future: %+v", none)
	}
	// Events and the progress they move, in one transaction: a final row
	// stays final, a missing row is not created, an open row moves.
	moves := []state.ProgressMove{
		{RolloutID: "ro-1", DeviceID: "PUMP-1", State: "downloading", Updated: now},
		{RolloutID: "ro-1", DeviceID: "PUMP-2", State: "staged", Updated: now},
		{RolloutID: "ro-1", DeviceID: "PUMP-3", State: "staged", Updated: now},
	}
	evs := []state.DeviceEvent{{ID: "00000000000000000000000000000e01", DeviceID: "PUMP-2", Target: "demo-pump/x.img", State: "staged", Time: now}}
	added, moved, err := s.IngestDeviceEvents(ctx, evs, moves)
	if err != nil || added != 1 || len(moved) != 3 || moved[0] || !moved[1] || moved[2] {
		t.Fatalf("ingest: added %d, moved %v, %v", added, moved, err)
	}
	if again, _, _ := s.IngestDeviceEvents(ctx, evs, nil); again != 0 {
		t.Fatal("an event was stored twice")
	}
	if p2, _ := s.DeviceProgress(ctx, "ro-1", "PUMP-2"); p2.State != "staged" {
		t.Fatalf("PUMP-2 is %s", p2.State)
	}
	if _, err := s.DeviceProgress(ctx, "ro-1", "PUMP-3"); !apperr.Is(err, apperr.NotFound) {
		t.Fatal("a move created a row for a device without an assignment")
	}
	if one, err := s.DeviceProgress(ctx, "ro-1", "PUMP-1"); err != nil || one.State != "committed" {
		t.Fatalf("device progress %+v %v", one, err)
	}
	if _, err := s.DeviceProgress(ctx, "ro-1", "PUMP-9"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("missing progress: %v", err)
	}
}

// testClaims races 3 replicas × 20 devices for assignments at one site with
// a site cap of 5 and a care-area cap of 2: exactly the caps are handed
// out, a device is assigned once, a finished assignment frees its slot,
// and another site is not held back.
func testClaims(t *testing.T, open Opener) {
	ctx := t.Context()
	replicas := []state.Store{open(t), open(t), open(t)}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := replicas[0].CreateRollout(ctx, state.Rollout{ID: "ro-c", Product: "demo-pump", Version: "1.1.0", Target: "demo-pump/x.img", Plan: []byte(`{}`), State: "active", WaveOpened: now, Created: now}); err != nil {
		t.Fatal(err)
	}
	const siteCap, areaCap, devices = 5, 2, 20
	claim := func(r state.Store, id, site, area string) state.ClaimResult {
		res, err := r.ClaimAssignment(ctx, state.Progress{RolloutID: "ro-c", DeviceID: id, State: "assigned", Updated: now},
			state.Claim{Site: site, CareArea: area, SiteCap: siteCap, AreaCap: areaCap})
		if err != nil {
			t.Error(err)
		}
		return res
	}
	var mu sync.Mutex
	got := map[state.ClaimResult]int{}
	var wg sync.WaitGroup
	for i := range devices {
		for _, r := range replicas { // every replica tries every device
			wg.Add(1)
			go func() {
				defer wg.Done()
				area := ""
				if i%2 == 0 {
					area = "icu"
				}
				res := claim(r, fmt.Sprintf("PUMP-%02d", i), "st-mary", area)
				mu.Lock()
				got[res]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	ps, _ := replicas[1].Progress(ctx, "ro-c")
	icu := 0
	for _, p := range ps {
		var n int
		if _, err := fmt.Sscanf(p.DeviceID, "PUMP-%d", &n); err == nil && n%2 == 0 {
			icu++
		}
	}
	if got[state.Claimed] != siteCap || len(ps) != siteCap || icu > areaCap {
		t.Fatalf("claimed %d (rows %d, %d in the care area), want exactly the site cap %d with at most %d in the care area: %v", got[state.Claimed], len(ps), icu, siteCap, areaCap, got)
	}
	if got[state.AlreadyAssigned] == 0 || got[state.SiteFull] == 0 {
		t.Fatalf("outcomes %v", got)
	}
	if res := claim(replicas[2], "PUMP-99", "st-luke", "icu"); res != state.Claimed {
		t.Fatalf("another site was held back: %v", res)
	}
	// A finished assignment frees its slot; a deferred one does not.
	p := ps[0]
	p.State = "deferred"
	replicas[0].SetProgress(ctx, p, false)
	if res := claim(replicas[1], "PUMP-50", "st-mary", ""); res != state.SiteFull {
		t.Fatalf("a deferred device freed its slot: %v", res)
	}
	p.State = "committed"
	replicas[0].SetProgress(ctx, p, false)
	if res := claim(replicas[1], "PUMP-50", "st-mary", ""); res != state.Claimed {
		t.Fatalf("a committed device kept its slot: %v", res)
	}
}
