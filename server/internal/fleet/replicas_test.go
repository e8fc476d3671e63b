package fleet_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// capsAcrossReplicas: three fleets (replicas, each with its own cache and
// store handle) on one database; 60 devices in 3 care areas of one site
// (site cap 7, care-area cap 3) all check in on every replica at once, twice,
// then once more one at a time. Exactly 7 devices are assigned, at most 3
// in any care area, and every
// device that got an answer got it from the one stored assignment. Before
// slots were claimed in the database each replica could take the last
// place, so 3 replicas could hand out up to 9.
func capsAcrossReplicas(t *testing.T, open func(t *testing.T) state.Store) {
	ctx := context.Background()
	const devices, siteCap, areaCap = 60, 7, 3
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	var replicas []*fleet.Fleet
	var stores []state.Store
	for range 3 {
		st := open(t)
		f := newFleet(st, fixedTargets{})
		f.SetClock(func() time.Time { return now })
		replicas, stores = append(replicas, f), append(stores, st)
	}
	if err := replicas[0].Registry.PutSite(ctx, api.Site{Name: "st-mary", TimeZone: "UTC", SiteCap: siteCap, CareAreaCap: areaCap}); err != nil {
		t.Fatal(err)
	}
	var ins []api.Device
	for i := range devices {
		ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%03d", i), Product: "demo-pump", Hardware: "rev-b", Site: "st-mary",
			CareArea: fmt.Sprintf("ward-%d", i%3), PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
	}
	if err := replicas[0].Registry.RegisterDevices(ctx, ins); err != nil {
		t.Fatal(err)
	}
	ro, err := replicas[0].Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "all:100%", Soak: "1h", Success: "95%", HaltOn: "failure>=50% min=10"})
	if err != nil {
		t.Fatal(err)
	}
	if err := replicas[0].Rollouts.Approve(ctx, ro.ID, api.Approval{Wave: "all", Site: "st-mary", Comment: "CHG-1"}); err != nil {
		t.Fatal(err)
	}
	devs, _ := stores[0].DevicesOf(ctx, "demo-pump")
	var mu sync.Mutex
	answered := map[string]bool{}
	var wg sync.WaitGroup
	for range 2 {
		for _, d := range devs {
			for _, r := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a, err := r.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: now}, api.CheckIn{Installed: "1.0.0", State: api.StateIdle})
					if err != nil {
						t.Error(err)
						return
					}
					if a != nil {
						mu.Lock()
						answered[d.ID] = true
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	// A slot another replica's pending reservation held during the storm
	// may be free now: one more pass, one check-in at a time, fills the
	// site exactly to its caps.
	for _, d := range devs {
		for _, r := range replicas {
			a, err := r.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: now}, api.CheckIn{Installed: "1.0.0", State: api.StateIdle})
			if err != nil {
				t.Fatal(err)
			}
			if a != nil {
				answered[d.ID] = true
			}
		}
	}
	ps, err := stores[1].Progress(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	stored, perArea := map[string]bool{}, map[int]int{}
	for _, p := range ps {
		stored[p.DeviceID] = true
		var n int
		fmt.Sscanf(p.DeviceID, "PUMP-%d", &n)
		perArea[n%3]++
	}
	if len(ps) != siteCap || max(perArea[0], perArea[1], perArea[2]) > areaCap {
		t.Fatalf("%d assignments stored (per care area %v); the caps are %d at the site and %d per care area", len(ps), perArea, siteCap, areaCap)
	}
	for id := range answered {
		if !stored[id] {
			t.Errorf("%s was told to install but holds no stored assignment", id)
		}
	}
}

// openStore opens a handle ("replica") on the database dsn (a SQLite path
// or a PostgreSQL URL), closed when the test ends.
func openStore(t testing.TB, dsn string) state.Store {
	st, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestInstallCapsHoldExactlyAcrossThreeReplicasOnSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.db")
	capsAcrossReplicas(t, func(t *testing.T) state.Store { return openStore(t, path) })
}

func TestInstallCapsHoldExactlyAcrossThreeReplicasOnPostgres(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	capsAcrossReplicas(t, func(t *testing.T) state.Store { return openStore(t, dsn) })
}

// TestAReplicaSeesAnothersProgressWithoutReadingEveryRow: replica b has
// loaded a rollout; replica a assigns a device and ingests its commit; a
// second later (well inside FullProgressInterval, so only the rows changed
// since b's last read are read) b's status counts the commit.
func TestAReplicaSeesAnothersProgressWithoutReadingEveryRow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vigil.db")
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	var stores []state.Store
	var replicas []*fleet.Fleet
	for range 2 {
		st := openStore(t, path)
		f := newFleet(st, fixedTargets{})
		f.SetClock(func() time.Time { return now })
		stores, replicas = append(stores, st), append(replicas, f)
	}
	a, b := replicas[0], replicas[1]
	a.Registry.PutSite(ctx, api.Site{Name: "st-mary", TimeZone: "UTC", Policy: "auto-approve:security"})
	var ins []api.Device
	for i := range 50 {
		ins = append(ins, api.Device{ID: fmt.Sprintf("PUMP-%03d", i), Product: "demo-pump", Hardware: "rev-b", Site: "st-mary",
			PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", Installed: "1.0.0"})
	}
	if err := a.Registry.RegisterDevices(ctx, ins); err != nil {
		t.Fatal(err)
	}
	ro, err := a.Rollouts.Create(ctx, api.RolloutPlan{Release: "demo-pump@1.1.0", Waves: "all:100%", Soak: "1h", Success: "95%", HaltOn: "failure>=50% min=10"})
	if err != nil {
		t.Fatal(err)
	}
	committed := func(f *fleet.Fleet) int {
		st, err := f.Rollouts.Status(ctx, ro.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range st.Counts {
			n += c.Committed
		}
		return n
	}
	if committed(b) != 0 {
		t.Fatal("committed before anything happened")
	}
	devs, _ := stores[0].DevicesOf(ctx, "demo-pump")
	d := devs[7]
	if asg, err := a.CheckIns.CheckIn(ctx, fleet.Authenticated{Device: d, SignedAt: now}, api.CheckIn{Installed: "1.0.0", State: api.StateIdle}); err != nil || asg == nil {
		t.Fatalf("no assignment: %v", err)
	}
	if _, err := a.Events.Ingest(ctx, d, api.EventBatch{Events: []api.DeviceEvent{{ID: eventID(d.ID, "c"), DeviceID: d.ID,
		Target: "demo-pump/demo-pump-1.1.0.img", Version: "1.1.0", State: api.StateCommitted, Time: now}}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(fleet.EpochCheckInterval + time.Millisecond) // b's next refresh is due, its full re-read is not
	if n := committed(b); n != 1 {
		t.Fatalf("replica b counts %d committed after a's commit", n)
	}
}

// TestASessionOpenedOnOneReplicaIsAdmittedByAnother: replicas share the
// ticket key through the database, so a device's session works on every
// replica with no lookup.
func TestASessionOpenedOnOneReplicaIsAdmittedByAnother(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vigil.db")
	var replicas []*fleet.Fleet
	for range 2 {
		replicas = append(replicas, newFleet(openStore(t, path), fixedTargets{}))
	}
	if err := replicas[0].Registry.PutSite(ctx, api.Site{Name: "st-mary", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	if err := replicas[0].Registry.RegisterDevices(ctx, []api.Device{{ID: "PUMP-1", Product: "demo-pump", Hardware: "rev-b", Site: "st-mary",
		PublicKey: devicesig.EncodePublicKey(pub), Installed: "1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	// Open on replica 1 (a signed request), use on replica 0 and 1.
	now := time.Now()
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	body, _ := json.Marshal(api.SessionRequest{PublicKey: base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes())})
	req := httptest.NewRequest("POST", api.RouteDeviceSession, nil)
	devicesig.SignRequest(req, "PUMP-1", key, body, now)
	dr := func(req *http.Request, body []byte) fleet.DeviceRequest {
		return fleet.DeviceRequest{Method: "POST", Path: req.URL.Path, DeviceID: req.Header.Get(api.HeaderDevice), Timestamp: req.Header.Get(api.HeaderTimestamp),
			Nonce: req.Header.Get(api.HeaderNonce), Signature: req.Header.Get(api.HeaderSignature), Session: req.Header.Get(api.HeaderSession), Body: body, ChangesState: true}
	}
	dev, err := replicas[1].Auth.Authenticate(ctx, dr(req, body))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := replicas[1].Auth.OpenSession(ctx, dev, api.SessionRequest{PublicKey: base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes())})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := devicesig.ParseX25519(ss.ServerPublicKey)
	shared, _ := priv.ECDH(srv)
	k, _ := devicesig.SessionKey(shared, "PUMP-1", priv.PublicKey(), srv)
	for i, r := range replicas {
		checkin := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
		req := httptest.NewRequest("POST", api.RouteDeviceCheckIn, nil)
		devicesig.SignSessionRequest(req, "PUMP-1", ss.Ticket, k, checkin, now)
		got, err := r.Auth.Authenticate(ctx, dr(req, checkin))
		if err != nil || !got.ViaSession || got.ID != "PUMP-1" {
			t.Fatalf("replica %d: %+v %v", i, got, err)
		}
	}
}
