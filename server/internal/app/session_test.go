package app_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/fleet"
)

// session is a device session opened by hand, as a device would.
type session struct {
	ticket string
	key    []byte
}

// openSession opens a session for device with its key at time at; the
// answer's status and body come back when it is not 200.
func (w *deviceWorld) openSession(device string, key ed25519.PrivateKey, at time.Time, pub string) (session, int, string) {
	var priv *ecdh.PrivateKey
	if pub == "" {
		priv, _ = ecdh.X25519().GenerateKey(rand.Reader)
		pub = base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes())
	}
	body, _ := json.Marshal(api.SessionRequest{PublicKey: pub})
	code, out := w.do(w.signed(api.RouteDeviceSession, body, at, device, key))
	if code != 200 || priv == nil {
		return session{}, code, out
	}
	var ss api.Session
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		w.t.Fatal(err)
	}
	srv, ok := devicesig.ParseX25519(ss.ServerPublicKey)
	if !ok || ss.ExpiresInSeconds != 24*3600 {
		w.t.Fatalf("session answer: %s", out)
	}
	shared, _ := priv.ECDH(srv)
	k, _ := devicesig.SessionKey(shared, device, priv.PublicKey(), srv)
	return session{ticket: ss.Ticket, key: k}, code, out
}

func (w *deviceWorld) inSession(path string, body []byte, at time.Time, device string, ss session) *http.Request {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	devicesig.SignSessionRequest(req, device, ss.ticket, ss.key, body, at)
	return req
}

func TestDeviceSessionsAdmitTheirMACsAndRefuseForgeriesReplaysAndExpiry(t *testing.T) {
	w := newDeviceWorld(t)
	now := time.Now()
	checkin := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
	ss, code, out := w.openSession("PUMP-1", w.key, now, "")
	if code != 200 {
		t.Fatalf("open session: %d %s", code, out)
	}
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", ss)); code != 200 || !strings.Contains(body, `"assignment":null`) {
		t.Fatalf("check-in in a session: %d %s", code, body)
	}

	// Someone who swapped the server's X25519 key in the answer (or guessed)
	// has another key: the MAC does not verify.
	eve := ss
	eve.key = bytes.Repeat([]byte{7}, 32)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	other, code, out := w.openSession("PUMP-2", stranger, now, "")
	if code != 401 {
		t.Fatalf("a session opened with a key that is not the device's: %d %s", code, out)
	}
	_ = other
	raw, _ := base64.RawURLEncoding.DecodeString(ss.ticket)
	raw[len(raw)/2] ^= 1
	flipped := base64.RawURLEncoding.EncodeToString(raw)
	tampered := w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", ss)
	tampered.Body = httpBody(`{"installed_version":"9.9.9","state":"idle"}`)
	macAsSignature := w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", ss)
	macAsSignature.Header.Del(api.HeaderSession)
	cases := map[string]struct {
		req  *http.Request
		want string
	}{
		"MAC under another key":        {w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", eve), "session MAC does not verify"},
		"tampered body":                {tampered, "session MAC does not verify"},
		"ticket of another device":     {w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-2", ss), "another device"},
		"tampered ticket":              {w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", session{flipped, ss.key}), "not issued by this deployment"},
		"ticket that is not base64url": {w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", session{"%%%", ss.key}), "malformed"},
		"huge ticket":                  {w.inSession(api.RouteDeviceCheckIn, checkin, now, "PUMP-1", session{strings.Repeat("A", devicesig.MaxTicketLength+1), ss.key}), "at most"},
		"MAC sent as a signature":      {macAsSignature, "signature does not verify"},
		"stale timestamp":              {w.inSession(api.RouteDeviceCheckIn, checkin, now.Add(-6*time.Minute), "PUMP-1", ss), "away from the server's clock"},
		"session opened from a session": {w.inSession(api.RouteDeviceSession, []byte(`{"public_key":"`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"}`), now, "PUMP-1", ss),
			"signed with the device key"},
	}
	for name, c := range cases {
		if code, body := w.do(c.req); code != 401 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}

	// Bad X25519 keys are named; a low-order point gives no shared secret.
	for name, pub := range map[string]string{
		"not base64":      "***",
		"short":           base64.StdEncoding.EncodeToString(make([]byte, 31)),
		"low-order point": base64.StdEncoding.EncodeToString(make([]byte, 32)),
	} {
		if _, code, out := w.openSession("PUMP-1", w.key, now, pub); code != 400 || !strings.Contains(out, "X25519") {
			t.Errorf("session with a %s public key: %d %s", name, code, out)
		}
	}

	// Events in a session spend their nonce like signed ones: a replay is refused.
	ev, _ := json.Marshal(api.EventBatch{Events: []api.DeviceEvent{{ID: "00112233445566778899aabbccddeeff", DeviceID: "PUMP-1", State: "downloading", Time: now}}})
	req := w.inSession(api.RouteDeviceEvents, ev, now, "PUMP-1", ss)
	replay := req.Clone(context.Background())
	replay.Body = httpBody(string(ev))
	if code, body := w.do(req); code != 200 {
		t.Fatalf("events in a session: %d %s", code, body)
	}
	if code, body := w.do(replay); code != 401 || !strings.Contains(body, "replay") {
		t.Fatalf("replayed events in a session: %d %s", code, body)
	}

	// A session ends after a day, with a code that tells the device to open
	// a new one.
	later := now.Add(24*time.Hour + time.Minute)
	w.srv.Fleet.SetClock(func() time.Time { return later })
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, later, "PUMP-1", ss)); code != 401 || !strings.Contains(body, api.CodeSessionInvalid) || !strings.Contains(body, "expired") {
		t.Fatalf("an expired session: %d %s", code, body)
	}
	fresh, code, out := w.openSession("PUMP-1", w.key, later, "")
	if code != 200 {
		t.Fatalf("a new session: %d %s", code, out)
	}
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, later, "PUMP-1", fresh)); code != 200 {
		t.Fatalf("check-in in the new session: %d %s", code, body)
	}

	// Decommissioning ends the session at once.
	w.admin("POST", api.Path(api.RouteDecommission, "PUMP-1"), "", 200)
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, later, "PUMP-1", fresh)); code != 401 || !strings.Contains(body, "decommissioned") {
		t.Fatalf("a decommissioned device's session: %d %s", code, body)
	}
}

// The device client opens one session for many requests, opens a new one
// when the server refuses its session, and signs each request when the
// server has no sessions (an older server).
func TestDeviceClientUsesOneSessionReopensWhenRefusedAndFallsBackToSigning(t *testing.T) {
	w := newDeviceWorld(t)
	var opened, sessionMACs, signatures, breakNext atomic.Int32
	legacy := false
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == api.RouteDeviceSession && legacy:
			http.NotFound(rw, r)
			return
		case r.URL.Path == api.RouteDeviceSession:
			opened.Add(1)
		case r.Header.Get(api.HeaderSession) != "":
			sessionMACs.Add(1)
			if breakNext.CompareAndSwap(1, 0) {
				r.Header.Set(api.HeaderSession, "bm90LWEtdGlja2V0LWZyb20tdGhpcy1kZXBsb3ltZW50") // as if the servers' ticket key changed
			}
		default:
			signatures.Add(1)
		}
		w.h.ServeHTTP(rw, r)
	}))
	defer srv.Close()
	ctx := context.Background()
	c := client.NewDevice(srv.URL, "PUMP-1", w.key)
	for range 5 {
		if _, err := c.CheckIn(ctx, api.CheckIn{Installed: "1.0.0", State: api.StateIdle}); err != nil {
			t.Fatal(err)
		}
	}
	if opened.Load() != 1 || sessionMACs.Load() != 5 || signatures.Load() != 0 {
		t.Fatalf("5 check-ins: %d sessions opened, %d session requests, %d signed requests", opened.Load(), sessionMACs.Load(), signatures.Load())
	}
	// Another replica's client of the same device shares the session.
	if _, err := c.WithBase(srv.URL).CheckIn(ctx, api.CheckIn{Installed: "1.0.0", State: api.StateIdle}); err != nil || opened.Load() != 1 {
		t.Fatalf("a shared session: %v, %d opened", err, opened.Load())
	}
	breakNext.Store(1)
	if _, err := c.CheckIn(ctx, api.CheckIn{Installed: "1.0.0", State: api.StateIdle}); err != nil {
		t.Fatalf("a refused session is not reopened: %v", err)
	}
	if opened.Load() != 2 {
		t.Fatalf("after a refused session: %d opened", opened.Load())
	}
	legacy = true
	old := client.NewDevice(srv.URL, "PUMP-1", w.key)
	for range 2 {
		if _, err := old.CheckIn(ctx, api.CheckIn{Installed: "1.0.0", State: api.StateIdle}); err != nil {
			t.Fatalf("against a server without sessions: %v", err)
		}
	}
	if signatures.Load() != 2 {
		t.Fatalf("against a server without sessions: %d signed requests", signatures.Load())
	}
}

// Ticket keys rotate by themselves: a session opened just before a new key
// period still works after it starts (sealed under the previous key), a new
// session is sealed under the new key, and a ticket under a key two periods
// old is refused as retired.
func TestSessionTicketKeysRotateEachPeriodWithoutCuttingLiveSessions(t *testing.T) {
	w := newDeviceWorld(t)
	checkin := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
	period := int64(fleet.TicketKeyPeriod / time.Second)
	start := time.Unix((time.Now().Unix()/period+1)*period, 0) // the start of the next key period
	at := func(t time.Time) time.Time { w.srv.Fleet.SetClock(func() time.Time { return t }); return t }
	before := at(start.Add(-time.Hour))
	old, code, out := w.openSession("PUMP-1", w.key, before, "")
	if code != 200 {
		t.Fatalf("open before the new period: %d %s", code, out)
	}
	after := at(start.Add(time.Hour))
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, after, "PUMP-1", old)); code != 200 {
		t.Fatalf("a live session across the key change: %d %s", code, body)
	}
	fresh, code, out := w.openSession("PUMP-1", w.key, after, "")
	keyPeriod := func(ticket string) uint64 {
		raw, _ := base64.RawURLEncoding.DecodeString(ticket)
		return binary.BigEndian.Uint64(raw)
	}
	if code != 200 || keyPeriod(fresh.ticket) != keyPeriod(old.ticket)+1 || keyPeriod(fresh.ticket) != uint64(start.Unix()/period) {
		t.Fatalf("a session in the new period is not sealed under the new key: %d %s", code, out)
	}
	retired := at(start.Add(fleet.TicketKeyPeriod + time.Hour))
	if code, body := w.do(w.inSession(api.RouteDeviceCheckIn, checkin, retired, "PUMP-1", old)); code != 401 || !strings.Contains(body, "retired key") {
		t.Fatalf("a ticket under a retired key: %d %s", code, body)
	}
}
