package fleet_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/fleet"
)

// The flake behind TestRolloutAcrossTwoSites…: when every canary device sat
// at the site that withheld its approval, the other site's approval did not
// open the next wave, because the rule ran on a cached snapshot that did not
// hold the approval yet; the rollout then waited for the controller's next
// pass. The fleet here is sized so that the canary cannot be empty
// (P = 2^-200), whatever the random rollout id.
func TestApprovalOpensAWaveWhoseDevicesAreAllAtSitesThatDidNotApprove(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "v.db"))
	svc := newFleet(st, fixedTargets{})
	for _, name := range []string{"st-mary", "north"} {
		if err := svc.Registry.PutSite(ctx, api.Site{Name: name, TimeZone: "America/Chicago"}); err != nil {
			t.Fatal(err)
		}
	}
	var ins []api.Device
	for i := range 200 { // every device is at north; st-mary has none
		ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%04d", i), Product: "demo-pump", Hardware: "rev-b", Site: "north",
			PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
	}
	if err := svc.Registry.RegisterDevices(ctx, ins); err != nil {
		t.Fatal(err)
	}
	r, err := svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "canary:50%,all:100%", Soak: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	st0, err := svc.Rollouts.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st0.CurrentWave != "canary" || !slices.Equal(st0.WaitingFor, []string{"north"}) {
		t.Fatalf("before any approval: wave %s, waiting for %v; want canary, [north]", st0.CurrentWave, st0.WaitingFor)
	}
	if err := svc.Rollouts.Approve(ctx, r.ID, api.Approval{Wave: "canary", Site: "st-mary"}); err != nil {
		t.Fatal(err)
	}
	st1, err := svc.Rollouts.Status(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st1.CurrentWave != "all" {
		t.Fatalf("st-mary approved the canary, whose devices are all at north: wave %s is still open, want all", st1.CurrentWave)
	}
	if !slices.Equal(st1.WaitingFor, []string{"north"}) {
		t.Fatalf("wave all waits for %v, want [north]", st1.WaitingFor)
	}
}

// A check-in's assignment names the delta that rebuilds the release from
// the version the device reports, and none when no delta applies to it.
func TestAnAssignmentNamesTheDeltaForTheDevicesInstalledVersion(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "v.db"))
	svc := newFleet(st, fixedTargets{})
	if err := svc.Registry.PutSite(ctx, api.Site{Name: "st-mary", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	installed := map[string]string{"PUMP-1": "1.0.0", "PUMP-2": "1.0.5"}
	for id, v := range installed {
		if err := svc.Registry.RegisterDevices(ctx, []api.Device{{ID: id, Product: "demo-pump", Hardware: "rev-b", Site: "st-mary",
			PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: v}}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "all:100%", Soak: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Rollouts.Approve(ctx, r.ID, api.Approval{Wave: "all", Site: "st-mary"}); err != nil {
		t.Fatal(err)
	}
	devs, _ := st.DevicesOf(ctx, "demo-pump")
	want := map[string]string{"PUMP-1": "demo-pump/demo-pump-1.1.0.img.from-1.0.0.vdelta", "PUMP-2": ""}
	for _, d := range devs {
		a, err := svc.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: time.Now()}, api.CheckIn{Installed: installed[d.ID], State: api.StateIdle})
		if err != nil || a == nil {
			t.Fatalf("%s: %+v %v", d.ID, a, err)
		}
		if a.Delta != want[d.ID] || a.Target != "demo-pump/demo-pump-1.1.0.img" {
			t.Errorf("%s on %s: delta %q, target %s; want delta %q", d.ID, installed[d.ID], a.Delta, a.Target, want[d.ID])
		}
	}
}
