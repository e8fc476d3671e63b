package devicesig_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/vigil-ota/vigil/api/devicesig"
)

// Both sides derive the same key; it is bound to the device and to both
// public keys, so a key agreed for one device or one exchange is useless
// for another.
func TestSessionKeysAgreeAndAreBoundToDeviceAndExchange(t *testing.T) {
	dev, _ := ecdh.X25519().GenerateKey(rand.Reader)
	srv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	s1, _ := dev.ECDH(srv.PublicKey())
	s2, _ := srv.ECDH(dev.PublicKey())
	k1, _ := devicesig.SessionKey(s1, "PUMP-1", dev.PublicKey(), srv.PublicKey())
	k2, _ := devicesig.SessionKey(s2, "PUMP-1", dev.PublicKey(), srv.PublicKey())
	if !bytes.Equal(k1, k2) || len(k1) != devicesig.SessionKeySize {
		t.Fatal("the two sides derived different keys")
	}
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for name, k := range map[string][]byte{
		"another device":     must(devicesig.SessionKey(s1, "PUMP-2", dev.PublicKey(), srv.PublicKey())),
		"another server key": must(devicesig.SessionKey(s1, "PUMP-1", dev.PublicKey(), other.PublicKey())),
	} {
		if bytes.Equal(k, k1) {
			t.Errorf("%s: the same key", name)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// A MAC covers every field; the scheme's name leads what is covered, so a
// session MAC is never the signing string of a signed request.
func TestSessionMACCoversEveryFieldAndItsOwnSchemeName(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	mac := base64.StdEncoding.EncodeToString(devicesig.SessionMAC(key, "POST", "/api/v1/device/checkin", 100, "n1", []byte("{}")))
	if !devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/checkin", 100, "n1", []byte("{}"), mac) {
		t.Fatal("a good MAC does not verify")
	}
	for name, ok := range map[string]bool{
		"method":    devicesig.VerifySessionMAC(key, "PUT", "/api/v1/device/checkin", 100, "n1", []byte("{}"), mac),
		"path":      devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/events", 100, "n1", []byte("{}"), mac),
		"timestamp": devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/checkin", 101, "n1", []byte("{}"), mac),
		"nonce":     devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/checkin", 100, "n2", []byte("{}"), mac),
		"body":      devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/checkin", 100, "n1", []byte("[]"), mac),
		"key":       devicesig.VerifySessionMAC(bytes.Repeat([]byte{2}, 32), "POST", "/api/v1/device/checkin", 100, "n1", []byte("{}"), mac),
		"not b64":   devicesig.VerifySessionMAC(key, "POST", "/api/v1/device/checkin", 100, "n1", []byte("{}"), "%"+mac),
	} {
		if ok {
			t.Errorf("a MAC verified with another %s", name)
		}
	}
	a := devicesig.SessionSigningString("POST", "/p", 1, "n", nil)
	b := devicesig.SigningString("POST", "/p", 1, "n", nil)
	if bytes.Equal(a, b) || !bytes.HasPrefix(a, []byte(devicesig.SessionVersion+"\n")) {
		t.Fatalf("session and signature strings are not separated: %q %q", a, b)
	}
}

func TestX25519KeysAreParsedStrictly(t *testing.T) {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, ok := devicesig.ParseX25519(base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())); !ok {
		t.Fatal("a good key was refused")
	}
	for _, s := range []string{"", "***", base64.StdEncoding.EncodeToString(make([]byte, 31)), base64.StdEncoding.EncodeToString(make([]byte, 33)),
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 4096))} {
		if _, ok := devicesig.ParseX25519(s); ok {
			t.Errorf("%q was accepted", s)
		}
	}
}
