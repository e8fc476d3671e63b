package devicesig

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// Sessions: why and what holds.
//
// Verifying an ed25519 signature costs the server ~50 µs, most of a
// check-in's CPU. A session pays it once: the device sends a request signed
// with its key (api.RouteDeviceSession) carrying a fresh X25519 public key;
// the server answers with its own fresh X25519 public key and a ticket, an
// AEAD-sealed record (readable only by the servers) of the device id, the
// device's registered key, the session key and the session's expiry. Both
// sides derive the session key from the X25519 shared secret
// (SessionKey). Each later request carries the ticket and an HMAC-SHA256,
// under that key, of the same fields a signature covers.
//
// Holds: an eavesdropper (or a party that swapped the server's X25519 key
// in the answer) does not have the key inside the ticket, so cannot make a
// MAC the servers accept; a session made for one device or one registered
// key is refused for another; a session ends at its expiry, when the device
// is decommissioned, or when its key is re-registered; the timestamp window
// and nonce rules are those of signed requests, so replays are refused as
// before. A MAC never verifies as a signature or the reverse (each scheme's
// name leads what is authenticated). Anyone who reads the servers' ticket
// keys (they live in the database; a new one each week, the old ones
// refused after two) can mint sessions until that key retires: protect the
// database as the device registry it already is.
const (
	// SessionVersion names the session MAC scheme.
	SessionVersion = "vigil-device-session-v1"
	// SessionKeySize is the session key's length, in bytes.
	SessionKeySize = 32
	// MaxTicketLength bounds a ticket as sent in api.HeaderSession, in bytes.
	MaxTicketLength = 512
)

// SessionSigningString is what a session MAC covers.
func SessionSigningString(method, path string, ts int64, nonce string, body []byte) []byte {
	return signingString(SessionVersion, method, path, ts, nonce, body)
}

// SessionKey derives the session key from the X25519 shared secret, bound
// to the device and both public keys (HKDF-SHA256).
func SessionKey(shared []byte, deviceID string, devicePub, serverPub *ecdh.PublicKey) ([]byte, error) {
	info := SessionVersion + "\n" + deviceID + "\n" + base64.StdEncoding.EncodeToString(devicePub.Bytes()) + "\n" + base64.StdEncoding.EncodeToString(serverPub.Bytes())
	return hkdf.Key(sha256.New, shared, nil, info, SessionKeySize)
}

// SessionMAC is the MAC of a request's fields under key.
func SessionMAC(key []byte, method, path string, ts int64, nonce string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(SessionSigningString(method, path, ts, nonce, body))
	return m.Sum(nil)
}

// VerifySessionMAC reports, in constant time, whether mac (base64, as sent
// in api.HeaderSignature) is the MAC of the fields under key.
func VerifySessionMAC(key []byte, method, path string, ts int64, nonce string, body []byte, mac string) bool {
	got, err := base64.StdEncoding.DecodeString(mac)
	return err == nil && hmac.Equal(got, SessionMAC(key, method, path, ts, nonce, body))
}

// SignSessionRequest adds the session headers to req, whose body is body.
func SignSessionRequest(req *http.Request, deviceID, ticket string, key, body []byte, now time.Time) {
	ts, nonce := stamp(req, deviceID, now)
	req.Header.Set(api.HeaderSession, ticket)
	req.Header.Set(api.HeaderSignature, base64.StdEncoding.EncodeToString(SessionMAC(key, req.Method, req.URL.Path, ts, nonce, body)))
}

// ParseX25519 reads an X25519 public key as sent (base64 of 32 bytes).
func ParseX25519(s string) (*ecdh.PublicKey, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, false
	}
	k, err := ecdh.X25519().NewPublicKey(b)
	return k, err == nil
}
