package fleet_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

// countingStore counts the reads that cost O(devices).
type countingStore struct {
	state.Store
	devicesOf, progress atomic.Int64
}

func (c *countingStore) DevicesOf(ctx context.Context, product string) ([]state.Device, error) {
	c.devicesOf.Add(1)
	return c.Store.DevicesOf(ctx, product)
}

func (c *countingStore) Progress(ctx context.Context, id string) ([]state.Progress, error) {
	c.progress.Add(1)
	return c.Store.Progress(ctx, id)
}

func statusFleet(t testing.TB, n int) (*fleet.Fleet, *countingStore, *simClock, string) {
	ctx := context.Background()
	raw, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	st := &countingStore{Store: raw}
	clock := &simClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	svc := newFleet(st, fixedTargets{})
	svc.SetClock(clock.now)
	for _, site := range simSites {
		if err := svc.Registry.PutSite(ctx, api.Site{Name: site, TimeZone: "America/Chicago"}); err != nil {
			t.Fatal(err)
		}
	}
	var ins []api.Device
	for i := range n {
		ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%06d", i), Product: "demo-pump", Hardware: "rev-b", Site: simSites[i%5],
			PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
	}
	if err := svc.Registry.RegisterDevices(ctx, ins); err != nil {
		t.Fatal(err)
	}
	r, err := svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "canary:10%,all:100%", Soak: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, clock, r.ID
}

// Finding 14: a status read used to rebuild the rollout from every device
// (18-24 s and 820 MB at 100,000 devices, with check-ins waiting). Reads now
// come from counters kept as events arrive: repeated reads touch no
// per-device data, and the counts follow events at once.
func TestRolloutStatusReadsCountersNotDevices(t *testing.T) {
	ctx := context.Background()
	svc, st, clock, id := statusFleet(t, 2000)
	for _, site := range simSites {
		svc.Rollouts.Approve(ctx, id, api.Approval{Wave: "canary", Site: site})
	}
	first, err := svc.Rollouts.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	before := st.devicesOf.Load() + st.progress.Load()
	for range 50 {
		if _, err := svc.Rollouts.Status(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.devicesOf.Load() + st.progress.Load() - before; got != 0 {
		t.Fatalf("50 status reads made %d per-device reads", got)
	}
	eligible := 0
	for _, c := range first.Counts {
		if c.Wave == "canary" {
			eligible += c.Eligible
		}
	}
	// A device checks in, is assigned, commits: the counts move.
	var dev state.Device
	for i := range 2000 {
		d, _ := st.Device(ctx, fmt.Sprintf("PUMP-%06d", i))
		if a, _ := svc.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: clock.now()}, api.CheckIn{Installed: "1.0.0"}); a != nil {
			dev = d
			break
		}
	}
	if dev.ID == "" || eligible == 0 {
		t.Fatalf("no canary device among 2,000 (eligible %d)", eligible)
	}
	if _, err := svc.Events.Ingest(ctx, dev, api.EventBatch{Events: []api.DeviceEvent{{ID: eventID(dev.ID, "c"), DeviceID: dev.ID,
		Target: "demo-pump/demo-pump-1.1.0.img", Version: "1.1.0", State: "committed", Time: clock.now()}}}); err != nil {
		t.Fatal(err)
	}
	after, _ := svc.Rollouts.Status(ctx, id)
	committed, assigned := 0, 0
	for _, c := range after.Counts {
		committed += c.Committed
		assigned += c.Assigned
	}
	if committed != 1 || assigned != 1 {
		t.Fatalf("after one commit: %d committed, %d assigned", committed, assigned)
	}
}

// BenchmarkRolloutStatus reads the status of a rollout over 100,000
// devices (docs/benchmarks.md).
func BenchmarkRolloutStatus100k(b *testing.B) {
	svc, _, _, id := statusFleet(b, 100_000)
	ctx := context.Background()
	svc.Rollouts.Status(ctx, id) // the one load after the fleet changed
	b.ResetTimer()
	for b.Loop() {
		if _, err := svc.Rollouts.Status(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
