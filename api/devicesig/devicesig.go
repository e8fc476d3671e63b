// Package devicesig is the wire format of a device's signed request, shared
// by vigil-agent (which signs) and vigil-server (which verifies). A device
// signs
//
//	vigil-device-v1 \n METHOD \n PATH \n TIMESTAMP \n NONCE \n SHA256(BODY) hex
//
// with its ed25519 key and sends the result, base64, with its id, the Unix
// timestamp and the nonce in the api.Header* headers.
//
// A device may instead open a session (session.go): one such signed request
// agrees on a key by X25519, and later requests carry an HMAC-SHA256 of the
// same fields under the name vigil-device-session-v1, with the server's
// sealed ticket. The timestamp window and nonce rules are the same.
package devicesig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// Version names the signing scheme.
const Version = "vigil-device-v1"

// SigningString is what a device signs.
func SigningString(method, path string, ts int64, nonce string, body []byte) []byte {
	return signingString(Version, method, path, ts, nonce, body)
}

// signingString is the request's fields under a scheme's name, so a
// signature made for one scheme never verifies under another.
func signingString(scheme, method, path string, ts int64, nonce string, body []byte) []byte {
	h := sha256.Sum256(body)
	return []byte(scheme + "\n" + method + "\n" + path + "\n" + strconv.FormatInt(ts, 10) + "\n" + nonce + "\n" + hex.EncodeToString(h[:]))
}

// SignRequest adds the signature headers to req, whose body is body.
func SignRequest(req *http.Request, deviceID string, key ed25519.PrivateKey, body []byte, now time.Time) {
	ts, nonce := stamp(req, deviceID, now)
	req.Header.Set(api.HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(key, SigningString(req.Method, req.URL.Path, ts, nonce, body))))
}

// stamp sets the device, timestamp and a fresh nonce on req.
func stamp(req *http.Request, deviceID string, now time.Time) (int64, string) {
	nb := make([]byte, 16)
	rand.Read(nb)
	nonce := hex.EncodeToString(nb)
	ts := now.Unix()
	req.Header.Set(api.HeaderDevice, deviceID)
	req.Header.Set(api.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(api.HeaderNonce, nonce)
	return ts, nonce
}

// EncodePublicKey is how device public keys are registered.
func EncodePublicKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// DecodePublicKey parses a registered key.
func DecodePublicKey(s string) (ed25519.PublicKey, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

// MaxPublicKeyText bounds a public key as given for registration, in bytes.
const MaxPublicKeyText = 1024

// ParsePublicKey reads a device public key as people have it at hand: the
// PEM "PUBLIC KEY" file `vigil keys generate` writes, the base64 of its
// PKIX DER (the PEM's body on one line), or the base64 of the raw 32-byte
// ed25519 key (how keys are registered). Anything else, including a PKIX
// key of another algorithm, is an error that says what was expected.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxPublicKeyText {
		return nil, fmt.Errorf("the public key is %d bytes; a key is at most %d", len(s), MaxPublicKeyText)
	}
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, errors.New(`the public key is PEM but not a "PUBLIC KEY" block (give the .pub file vigil keys generate wrote)`)
		}
		der = blk.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errors.New("the public key is neither PEM nor base64 (give the .pub file vigil keys generate wrote, or its base64)")
		}
		if len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("the public key is not a PKIX public key: %v", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the public key is %T, not ed25519 (devices sign with ed25519)", k)
	}
	return ek, nil
}
