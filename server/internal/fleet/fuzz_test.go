package fleet_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

// FuzzDeviceCSV: the importer never panics, and every device it accepts
// is one the registry would accept.
func FuzzDeviceCSV(f *testing.F) {
	head := "id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n"
	key := "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	f.Add([]byte(head + "PUMP-1,0081,demo-pump,rev-b,st-mary,icu,a|b," + key + ",1.0.0\n"))
	f.Add([]byte("\ufeff" + head + "PUMP-1,0081,demo-pump,rev-b,st-mary,icu,," + key + ",1.0.0\n"))
	f.Add([]byte(head + "PUMP-1,=cmd|' /C calc'!A0,demo-pump,rev-b,st-mary,icu,," + key + ",1.0.0\n"))
	f.Add([]byte(head + "\"PUMP\n1\",0081,demo-pump,rev-b,st-mary,icu,," + key + ",1.0.0\n"))
	f.Add([]byte("id,product\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ins, _, err := fleet.ParseCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(ins) == 0 {
			t.Fatal("accepted a file with no devices")
		}
		for _, in := range ins {
			if _, ok := fleet.DecodePublicKey(in.PublicKey); !ok || in.ID == "" || in.Site == "" {
				t.Fatalf("accepted a device the registry would refuse: %+v", in)
			}
		}
	})
}

// FuzzDeviceRequestVerification: whatever arrives in the signature
// headers and body, Authenticate never panics, and it admits a request only
// when the registered device's key really signed exactly those fields.
func FuzzDeviceRequestVerification(f *testing.F) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(f.TempDir(), "v.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	svc := newFleet(st, nil)
	if err := svc.Registry.PutSite(ctx, api.Site{Name: "st-mary", TimeZone: "America/Chicago"}); err != nil {
		f.Fatal(err)
	}
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	if err := svc.Registry.RegisterDevices(ctx, []api.Device{{ID: "PUMP-1", Product: "demo-pump", Hardware: "rev-b", Site: "st-mary", PublicKey: devicesig.EncodePublicKey(pub)}}); err != nil {
		f.Fatal(err)
	}
	now := time.Now().Unix()
	svc.SetClock(func() time.Time { return time.Unix(now, 0) })
	body := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
	good := base64.StdEncoding.EncodeToString(ed25519.Sign(key, devicesig.SigningString("POST", api.RouteDeviceCheckIn, now, "n0nce", body)))
	f.Add("POST", api.RouteDeviceCheckIn, "PUMP-1", strconv.FormatInt(now, 10), "n0nce", good, body)
	f.Add("POST", api.RouteDeviceCheckIn, "PUMP-1", strconv.FormatInt(now, 10), "n0nce\nx", good, body)
	f.Add("GET", api.RouteDeviceCheckIn, "PUMP-2", "-9223372036854775808", "", "", []byte{})
	f.Fuzz(func(t *testing.T, method, path, device, ts, nonce, sig string, b []byte) {
		dev, err := svc.Auth.Authenticate(ctx, fleet.DeviceRequest{Method: method, Path: path, DeviceID: device, Timestamp: ts, Nonce: nonce, Signature: sig, Body: b})
		if err != nil {
			return
		}
		n, _ := strconv.ParseInt(ts, 10, 64)
		raw, _ := base64.StdEncoding.DecodeString(sig)
		if dev.ID != "PUMP-1" || device != "PUMP-1" || !ed25519.Verify(pub, devicesig.SigningString(method, path, n, nonce, b), raw) {
			t.Fatalf("admitted a request the key did not sign: %q %q %q %q %q", method, path, device, ts, nonce)
		}
	})
}
