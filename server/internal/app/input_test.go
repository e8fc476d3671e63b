package app_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
)

// Finding 11: hostile or careless input is refused with a 4xx that names
// the problem, and nothing of it is stored.
func TestHostileInputIsRefusedAndNamed(t *testing.T) {
	w := newDeviceWorld(t)
	status := func(method, path, body string) (int, string) {
		t.Helper()
		req := httptestRequest(method, path, body)
		return w.do(req)
	}
	manyWindows := make([]string, 65)
	for i := range manyWindows {
		manyWindows[i] = "Sun 01:00-02:00 America/Chicago"
	}
	mw, _ := json.Marshal(map[string]any{"time_zone": "America/Chicago", "windows": manyWindows})
	cases := []struct {
		name, method, path, body, want string
	}{
		{"token site empty", "POST", api.RouteTokens, `{"name":"it","role":"site-it","sites":[""]}`, "not an identifier"},
		{"token site wildcard", "POST", api.RouteTokens, `{"name":"it","role":"site-it","sites":["*"]}`, "not an identifier"},
		{"token site path", "POST", api.RouteTokens, `{"name":"it","role":"site-it","sites":["../st-mary"]}`, "not an identifier"},
		{"token name control", "POST", api.RouteTokens, `{"name":"it\u001b[31m","role":"auditor"}`, "control character"},
		{"time zone Local", "PUT", api.Path(api.RouteSite, "north"), `{"time_zone":"Local"}`, "IANA zone"},
		{"thousands of windows", "PUT", api.Path(api.RouteSite, "north"), string(mw), "at most 64"},
		{"megabyte comment", "POST", api.Path(api.RouteApprovals, "ro-x"), `{"wave":"all","site":"st-mary","comment":"` + strings.Repeat("x", 3000) + `"}`, "limit"},
		{"halt unknown release", "POST", api.Path(api.RouteReleaseHalt, "demo-pump@9.9.9"), `{"reason":"x"}`, "not"},
		{"halt without reason", "POST", api.Path(api.RouteReleaseHalt, "demo-pump@1.0.0"), `{"reason":""}`, "reason is required"},
	}
	for _, c := range cases {
		code, body := status(c.method, c.path, c.body)
		if code < 400 || code >= 500 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s (want a 4xx naming %q)", c.name, code, body, c.want)
		}
	}
	// Nothing of the refused requests reached the audit log.
	out := w.admin("GET", api.RouteAudit, "", 200)
	for _, bad := range []string{"release.halt", `"north"`} {
		if strings.Contains(out, bad) {
			t.Errorf("audit log holds %s after refused requests", bad)
		}
	}

	// Events dated year 1 (a broken clock).
	ev, _ := json.Marshal(api.EventBatch{Events: []api.DeviceEvent{{ID: "00112233445566778899aabbccddee01", DeviceID: "PUMP-1", State: "downloading", Time: time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)}}})
	if code, body := w.do(w.signed(api.RouteDeviceEvents, ev, time.Now(), "PUMP-1", w.key)); code != 400 || !strings.Contains(body, "ago") {
		t.Errorf("event dated year 1: %d %s", code, body)
	}

	// CSV: formula cells and control characters refused with their line;
	// a byte-order mark is fine.
	pub := devicesig.EncodePublicKey(w.key.Public().(ed25519.PublicKey))
	head := "id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n"
	for _, row := range []string{
		"PUMP-20,=HYPERLINK(\"http://evil\"),demo-pump,rev-b,st-mary,icu,," + pub + ",1.0.0\n",
		"PUMP-21,0081,demo-pump,rev-b,st-mary,@SUM(A1),," + pub + ",1.0.0\n",
		"PUMP-22,0081,demo-pump,rev-b,st-mary,+icu,," + pub + ",1.0.0\n",
		"PUMP-23,0081,demo-pump,rev-b,st-mary,-icu,," + pub + ",1.0.0\n",
		"PUMP-24,00\x0781,demo-pump,rev-b,st-mary,icu,," + pub + ",1.0.0\n",
	} {
		if out := w.admin("POST", api.RouteDeviceImport, head+row, 400); !strings.Contains(out, "line 2") {
			t.Errorf("row %q: %s", row, out)
		}
	}
	w.admin("POST", api.RouteDeviceImport, "\ufeff"+head+"PUMP-25,0081,demo-pump,rev-b,st-mary,icu,a|b,"+pub+",1.0.0\n", 201)

	// Structured cells may legitimately start with '+': a base64 key, a
	// HIBCC UDI-DI. They are checked by their own rules, not refused.
	plusKey := ""
	for i := byte(0); plusKey == ""; i++ {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize))
		if enc := devicesig.EncodePublicKey(k.Public().(ed25519.PublicKey)); enc[0] == '+' {
			plusKey = enc
		}
	}
	w.admin("POST", api.RouteDeviceImport, head+"PUMP-26,+H123PUMP1,demo-pump,rev-b,st-mary,icu,,"+plusKey+",1.0.0\n", 201)
}
