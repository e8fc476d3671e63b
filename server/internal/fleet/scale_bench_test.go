package fleet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// The scale benchmarks (make bench-scale): fleets of 10,000, 100,000 and
// 1,000,000 devices; VIGIL_SCALE_MAX caps the largest (a quick run).
var scaleSizes = []int{10_000, 100_000, 1_000_000}

// scaleWorkers is check-ins and event batches in flight while the rollout
// is driven (the in-process stand-in for many HTTP connections).
const scaleWorkers = 16

// devicesPerSite: one hospital site per 1,000 devices.
const devicesPerSite = 1000

func BenchmarkScalePostgres(b *testing.B) {
	runScale(b, func(b *testing.B) state.Store {
		st, err := sqlstore.Open(context.Background(), testsvc.PostgresDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	})
}

func BenchmarkScaleSQLite(b *testing.B) {
	runScale(b, func(b *testing.B) state.Store {
		st, err := sqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "vigil.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	})
}

func runScale(b *testing.B, open func(b *testing.B) state.Store) {
	limit, _ := strconv.Atoi(os.Getenv("VIGIL_SCALE_MAX"))
	for _, n := range scaleSizes {
		if limit > 0 && n > limit {
			break
		}
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			for b.Loop() {
				benchScale(b, open(b), n)
			}
		})
	}
}

// benchScale registers n devices through the registry (in imports of
// fleet.MaxImportRows), loads a 4-wave rollout (the cold status read),
// measures the check-in cache's bytes per device and warm status reads,
// then drives the rollout to the end: every device checks in, assigned
// devices report a commit, the controller opens the waves.
func benchScale(b *testing.B, st state.Store, n int) {
	ctx := context.Background()
	svc := newFleet(st, fixedTargets{})
	sites := max(5, n/devicesPerSite)
	for i := range sites {
		if err := svc.Registry.PutSite(ctx, api.Site{Name: fmt.Sprintf("site-%04d", i), TimeZone: "UTC", Policy: "auto-approve:security"}); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	for start := 0; start < n; start += fleet.MaxImportRows {
		var ins []api.Device
		for i := start; i < min(n, start+fleet.MaxImportRows); i++ {
			ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%07d", i), Product: "demo-pump", Hardware: "rev-b", Site: fmt.Sprintf("site-%04d", i%sites),
				CareArea: fmt.Sprintf("ward-%d", i%10), PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
		}
		if err := svc.Registry.RegisterDevices(ctx, ins); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(t0).Seconds(), "import-s")
	devs, err := st.DevicesOf(ctx, "demo-pump")
	if err != nil || len(devs) != n {
		b.Fatalf("%d devices registered: %v", len(devs), err)
	}
	ro, err := svc.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Select: "product=demo-pump,version<1.1.0",
		Waves: "canary:1%,pilot:10%,broad:50%,all:100%", Soak: "0s", Success: "95%", HaltOn: "failure>=5% min=20"})
	if err != nil {
		b.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	t0 = time.Now()
	if _, err := svc.Rollouts.Status(ctx, ro.ID); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "status-cold-ms")
	// Every device checks in once: the device cache fills, the canary is
	// assigned.
	pass := func() {
		var wg sync.WaitGroup
		now := time.Now()
		for w := range scaleWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(devs); i += scaleWorkers {
					d := devs[i]
					a, err := svc.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: now}, api.CheckIn{Installed: "1.0.0", State: api.StateIdle})
					if err != nil {
						b.Error(err)
						return
					}
					if a == nil {
						continue
					}
					if _, err := svc.Events.Ingest(ctx, d, api.EventBatch{Events: []api.DeviceEvent{{ID: eventID(d.ID, "c"), DeviceID: d.ID,
						Target: a.Target, Version: a.Version, State: api.StateCommitted, Time: now}}}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	t0 = time.Now()
	pass()
	firstPass := time.Since(t0)
	b.ReportMetric(float64(heap()-before)/float64(n), "cache-B/device")
	var lat []time.Duration
	for range 200 {
		t1 := time.Now()
		if _, err := svc.Rollouts.Status(ctx, ro.ID); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t1))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "status-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "status-p99-ms")
	committed := func() (int, string) {
		stat, err := svc.Rollouts.Status(ctx, ro.ID)
		if err != nil {
			b.Fatal(err)
		}
		c := 0
		for _, wc := range stat.Counts {
			c += wc.Committed
		}
		return c, stat.CurrentWave
	}
	for p := 0; p < 20; p++ {
		if c, _ := committed(); c == n {
			break
		}
		svc.CheckIns.FlushLastSeen(ctx)
		svc.Rollouts.Evaluate(ctx)
		pass()
	}
	b.ReportMetric((firstPass + time.Since(t0)).Seconds(), "rollout-s")
	if c, wave := committed(); c != n || wave != "all" {
		b.Fatalf("after the drive: %d of %d committed, wave %s", c, n, wave)
	}
}
