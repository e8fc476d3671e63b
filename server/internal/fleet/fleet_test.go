package fleet_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

func TestIngestStoresWellFormedEventsOnce(t *testing.T) {
	st, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFleet(st, nil)
	good := api.DeviceEvent{ID: "0123456789abcdef", DeviceID: "pump-1", State: "committed", Time: time.Now()}
	res, err := f.Events.Ingest(context.Background(), state.Device{ID: "pump-1", Product: "demo-pump"}, api.EventBatch{Events: []api.DeviceEvent{good}})
	if err != nil || res.Accepted != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	res, _ = f.Events.Ingest(context.Background(), state.Device{ID: "pump-1", Product: "demo-pump"}, api.EventBatch{Events: []api.DeviceEvent{good}})
	if res.Accepted != 0 || res.Duplicate != 1 {
		t.Fatalf("resend: %+v", res)
	}
	bad := map[string]func(e *api.DeviceEvent){
		"id":        func(e *api.DeviceEvent) { e.ID = "x" },
		"device_id": func(e *api.DeviceEvent) { e.DeviceID = "pump-2" },
		"state":     func(e *api.DeviceEvent) { e.State = "exploded" },
		"future":    func(e *api.DeviceEvent) { e.Time = time.Now().Add(48 * time.Hour) },
		"limit":     func(e *api.DeviceEvent) { e.Reason = strings.Repeat("x", fleet.MaxReasonBytes+1) },
	}
	for name, mutate := range bad {
		e := good
		mutate(&e)
		if _, err := f.Events.Ingest(context.Background(), state.Device{ID: "pump-1", Product: "demo-pump"}, api.EventBatch{Events: []api.DeviceEvent{e}}); !apperr.Is(err, apperr.Invalid) && !apperr.Is(err, apperr.Forbidden) {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := make([]api.DeviceEvent, fleet.MaxEventsPerBatch+1)
	if _, err := f.Events.Ingest(context.Background(), state.Device{ID: "pump-1", Product: "demo-pump"}, api.EventBatch{Events: big}); !apperr.Is(err, apperr.TooLarge) {
		t.Errorf("oversized batch: %v", err)
	}
	evs, err := f.Events.List(context.Background(), "pump-1", 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events %v %v", evs, err)
	}
}
