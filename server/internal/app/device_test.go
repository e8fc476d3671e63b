package app_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/app"
)

type deviceWorld struct {
	t   *testing.T
	h   http.Handler
	srv *app.Server
	key ed25519.PrivateKey
}

func newDeviceWorld(t *testing.T) *deviceWorld {
	srv := openServer(t, "boot")
	w := &deviceWorld{t: t, h: srv.Handler(), srv: srv}
	_, w.key, _ = ed25519.GenerateKey(rand.Reader)
	w.admin("PUT", api.Path(api.RouteSite, "st-mary"), `{"time_zone":"America/Chicago"}`, 200)
	for _, id := range []string{"PUMP-1", "PUMP-2"} {
		key := w.key
		if id == "PUMP-2" {
			_, key, _ = ed25519.GenerateKey(rand.Reader)
		}
		body, _ := json.Marshal([]map[string]any{{"id": id, "product": "demo-pump", "hardware": "rev-b", "site": "st-mary",
			"public_key": devicesig.EncodePublicKey(key.Public().(ed25519.PublicKey)), "installed_version": "1.0.0"}})
		w.admin("POST", api.RouteDevices, string(body), 201)
	}
	return w
}

func (w *deviceWorld) admin(method, path, body string, want int) string {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer boot")
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, req)
	if rec.Code != want {
		w.t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// signed builds a device request; tweak may break it.
func (w *deviceWorld) signed(path string, body []byte, at time.Time, device string, key ed25519.PrivateKey) *http.Request {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	devicesig.SignRequest(req, device, key, body, at)
	return req
}

func (w *deviceWorld) do(req *http.Request) (int, string) {
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestDeviceRequestsAreAuthenticatedAndReplayProtected(t *testing.T) {
	w := newDeviceWorld(t)
	checkin := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
	now := time.Now()
	if code, body := w.do(w.signed(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", w.key)); code != 200 || !strings.Contains(body, `"assignment":null`) {
		t.Fatalf("good check-in: %d %s", code, body)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	cases := map[string]struct {
		req  *http.Request
		want string
	}{
		"unknown device":   {w.signed(api.RouteDeviceCheckIn, checkin, now, "PUMP-404", w.key), "not registered"},
		"wrong key":        {w.signed(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", stranger), "does not verify"},
		"stale timestamp":  {w.signed(api.RouteDeviceCheckIn, checkin, now.Add(-6*time.Minute), "PUMP-1", w.key), "away from the server's clock"},
		"future timestamp": {w.signed(api.RouteDeviceCheckIn, checkin, now.Add(6*time.Minute), "PUMP-1", w.key), "away from the server's clock"},
		"unsigned":         {httptest.NewRequest("POST", api.RouteDeviceCheckIn, bytes.NewReader(checkin)), "not signed"},
	}
	tampered := w.signed(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", w.key)
	tampered.Body = httpBody(`{"installed_version":"9.9.9","state":"idle"}`)
	cases["tampered body"] = struct {
		req  *http.Request
		want string
	}{tampered, "does not verify"}
	for name, c := range cases {
		if code, body := w.do(c.req); code != 401 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}

	// A replayed check-in inside the window is harmless: same answer.
	req := w.signed(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", w.key)
	replay := req.Clone(context.Background())
	replay.Body = httpBody(string(checkin))
	if code, _ := w.do(req); code != 200 {
		t.Fatal("check-in refused")
	}
	if code, _ := w.do(replay); code != 200 {
		t.Fatal("a replayed check-in was refused (it is harmless and answered)")
	}

	// A replayed event batch is refused: events change state.
	ev, _ := json.Marshal(api.EventBatch{Events: []api.DeviceEvent{{ID: "00112233445566778899aabbccddeeff", DeviceID: "PUMP-1", State: "downloading", Time: now}}})
	req = w.signed(api.RouteDeviceEvents, ev, now, "PUMP-1", w.key)
	replay = req.Clone(context.Background())
	replay.Body = httpBody(string(ev))
	if code, body := w.do(req); code != 200 {
		t.Fatalf("events: %d %s", code, body)
	}
	if code, body := w.do(replay); code != 401 || !strings.Contains(body, "replay") {
		t.Fatalf("replayed events: %d %s", code, body)
	}

	// A device reports only for itself.
	other, _ := json.Marshal(api.EventBatch{Events: []api.DeviceEvent{{ID: "ffeeddccbbaa99887766554433221100", DeviceID: "PUMP-2", State: "failed", Time: now}}})
	if code, body := w.do(w.signed(api.RouteDeviceEvents, other, now, "PUMP-1", w.key)); code != 403 {
		t.Fatalf("reporting for another device: %d %s", code, body)
	}

	// Decommissioning revokes the key.
	w.admin("POST", api.Path(api.RouteDecommission, "PUMP-1"), "", 200)
	if code, body := w.do(w.signed(api.RouteDeviceCheckIn, checkin, time.Now(), "PUMP-1", w.key)); code != 401 || !strings.Contains(body, "decommissioned") {
		t.Fatalf("decommissioned device: %d %s", code, body)
	}
}

func TestDeviceImportIsAllOrNothingWithLineNumbers(t *testing.T) {
	w := newDeviceWorld(t)
	pub := devicesig.EncodePublicKey(w.key.Public().(ed25519.PublicKey))
	head := "id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n"
	good := "PUMP-10,0081,demo-pump,rev-b,st-mary,icu,a|b," + pub + ",1.0.0\n"
	for body, want := range map[string]string{
		head + good + "PUMP-11,0081,demo-pump,rev-b,st-mary,icu,," + pub + ",one\n":        "line 3",
		head + good + "PUMP-12,0081,demo-pump,rev-b,st-mary,icu,,not-a-key,1.0.0\n":        "line 3",
		"id,product\nPUMP-1,demo-pump\n":                                                   "line 1",
		head + good + "PUMP-13,0081,demo-pump,rev-b,st-mary,icu\n":                         "line 3",
		head + good + "PUMP-10,0081,demo-pump,rev-b,st-mary,icu,," + pub + ",1.0.0\n":      "listed twice",
		head + good + "PUMP-14,0081,demo-pump,rev-b,no-such-site,icu,," + pub + ",1.0.0\n": "no-such-site",
	} {
		out := w.admin("POST", api.RouteDeviceImport, body, 400)
		if !strings.Contains(out, want) {
			t.Errorf("import error %s lacks %q", out, want)
		}
	}
	// Nothing of the refused files was registered; the good row alone is.
	if out := w.admin("POST", api.RouteDeviceImport, head+good, 201); !strings.Contains(out, `"registered":1`) {
		t.Fatalf("first import: %s", out)
	}
	// The same rows again change nothing; a changed row is refused, named.
	if out := w.admin("POST", api.RouteDeviceImport, head+good, 201); !strings.Contains(out, `"registered":0,"unchanged":1`) {
		t.Fatalf("the same import again: %s", out)
	}
	moved := strings.Replace(good, ",st-mary,", ",north,", 1)
	if out := w.admin("POST", api.RouteDeviceImport, head+moved, 409); !strings.Contains(out, "line 2") || !strings.Contains(out, "site") {
		t.Fatalf("a changed row: %s", out)
	}
}

type body struct{ *strings.Reader }

func (body) Close() error { return nil }

func httpBody(s string) body { return body{strings.NewReader(s)} }

// Finding 7: a check-in captured while the device ran 1.0.0, replayed
// (inside the skew window) after a genuine 1.10.0 check-in, used to set the
// recorded version back to 1.0.0.
func TestAReplayedOlderCheckInDoesNotRewriteTheInstalledVersion(t *testing.T) {
	w := newDeviceWorld(t)
	now := time.Now()
	old := w.signed(api.RouteDeviceCheckIn, []byte(`{"installed_version":"1.0.0","state":"idle"}`), now.Add(-30*time.Second), "PUMP-1", w.key)
	captured := old.Clone(context.Background())
	captured.Body = httpBody(`{"installed_version":"1.0.0","state":"idle"}`)
	if code, body := w.do(old); code != 200 {
		t.Fatalf("first check-in: %d %s", code, body)
	}
	if code, body := w.do(w.signed(api.RouteDeviceCheckIn, []byte(`{"installed_version":"1.10.0","state":"committed"}`), now, "PUMP-1", w.key)); code != 200 {
		t.Fatalf("genuine check-in: %d %s", code, body)
	}
	if code, body := w.do(captured); code != 200 {
		t.Fatalf("the replay is answered (harmlessly): %d %s", code, body)
	}
	ctx := context.Background()
	if err := w.srv.Fleet.CheckIns.FlushLastSeen(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := w.srv.State.Device(ctx, "PUMP-1")
	if err != nil || d.Installed != "1.10.0" {
		t.Fatalf("recorded version after the replay: %q %v", d.Installed, err)
	}
	// And across a flush: the stored newest check-in time holds too.
	if code, _ := w.do(func() *http.Request {
		r := captured.Clone(ctx)
		r.Body = httpBody(`{"installed_version":"1.0.0","state":"idle"}`)
		return r
	}()); code != 200 {
		t.Fatal("second replay refused")
	}
	w.srv.Fleet.CheckIns.FlushLastSeen(ctx)
	if d, _ := w.srv.State.Device(ctx, "PUMP-1"); d.Installed != "1.10.0" {
		t.Fatalf("recorded version after a replay past a flush: %q", d.Installed)
	}
}

// readSpy fails the test if the body is read at all.
type readSpy struct {
	t    *testing.T
	read bool
}

func (r *readSpy) Read(p []byte) (int, error) { r.read = true; return 0, io.EOF }
func (r *readSpy) Close() error               { return nil }

// Finding 8: the device's headers are checked (known device, timestamp in
// the window) before its body is read; a body over the limit is 413.
func TestDeviceHeadersAreCheckedBeforeTheBodyIsRead(t *testing.T) {
	w := newDeviceWorld(t)
	for name, mk := range map[string]func() *http.Request{
		"unknown device": func() *http.Request {
			return w.signed(api.RouteDeviceEvents, []byte("{}"), time.Now(), "PUMP-404", w.key)
		},
		"stale": func() *http.Request {
			return w.signed(api.RouteDeviceEvents, []byte("{}"), time.Now().Add(-time.Hour), "PUMP-1", w.key)
		},
		"unsigned": func() *http.Request { return httptest.NewRequest("POST", api.RouteDeviceEvents, nil) },
	} {
		req := mk()
		spy := &readSpy{t: t}
		req.Body = spy
		if code, _ := w.do(req); code != 401 || spy.read {
			t.Errorf("%s: %d, body read: %v", name, code, spy.read)
		}
	}
	big := bytes.Repeat([]byte("x"), 2<<20)
	if code, body := w.do(w.signed(api.RouteDeviceEvents, big, time.Now(), "PUMP-1", w.key)); code != 413 {
		t.Fatalf("oversized device body: %d %s", code, body)
	}
}

func httptestRequest(method, path, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer boot")
	return req
}
