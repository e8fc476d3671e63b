package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// BenchmarkConsoleDevicesPage10k renders one page of the console's device
// list (100 rows, site-scoped to one of 10 sites) from a fleet of 10,000
// devices on SQLite, each with reported events: the whole request, as a
// browser makes it.
func BenchmarkConsoleDevicesPage10k(b *testing.B) {
	srv := openServer(b, "")
	ctx := context.Background()
	const devices, sites = 10_000, 10
	var ds []state.Device
	for s := range sites {
		if err := srv.State.PutSite(ctx, state.Site{Name: fmt.Sprintf("site-%02d", s), TimeZone: "America/Chicago"}); err != nil {
			b.Fatal(err)
		}
	}
	var evs []state.DeviceEvent
	for i := range devices {
		id := fmt.Sprintf("PUMP-%05d", i)
		ds = append(ds, state.Device{ID: id, Product: "demo-pump", Hardware: "rev-b", Site: fmt.Sprintf("site-%02d", i%sites), CareArea: "icu",
			PublicKey: "AAAA", Installed: "1.0.0"})
		for k, st := range []api.InstallState{api.StateDownloading, api.StateDeferred} {
			evs = append(evs, state.DeviceEvent{ID: fmt.Sprintf("%016x%04x", i, k), DeviceID: id, State: st, Reason: "in clinical use", Time: time.Now().Add(time.Duration(k) * time.Second)})
		}
	}
	if err := srv.State.AddDevices(ctx, ds); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(evs); i += 1000 {
		if _, err := srv.State.AddDeviceEvents(ctx, evs[i:min(i+1000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	it, err := srv.Operators().Create(ctx, api.TokenRequest{Name: "it", Role: operator.RoleSiteIT, Sites: []string{"site-03"}})
	if err != nil {
		b.Fatal(err)
	}
	ss, err := srv.Operators().SignIn(ctx, it.Secret)
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/console/devices?offset=500", nil)
		req.AddCookie(&http.Cookie{Name: httpapi.SessionCookie, Value: ss.ID})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
	}
}
