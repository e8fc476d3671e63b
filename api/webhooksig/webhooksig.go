// Package webhooksig is the contract of Vigil's webhooks: the headers each
// delivery carries and how receivers verify them. A delivery is a JSON
// body POSTed with
//
//	X-Vigil-Webhook-ID         a unique id (the same on every retry: receivers dedupe by it)
//	X-Vigil-Webhook-Timestamp  Unix seconds when the delivery was signed
//	X-Vigil-Webhook-Signature  "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// Verify checks all three and refuses a timestamp further than a tolerance
// from the receiver's clock (replays of old deliveries).
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers.
const (
	HeaderID        = "X-Vigil-Webhook-ID"
	HeaderTimestamp = "X-Vigil-Webhook-Timestamp"
	HeaderSignature = "X-Vigil-Webhook-Signature"
	signaturePrefix = "v1="
)

// DefaultTolerance is how far a timestamp may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// Sign returns the signature header value of body signed at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Errors Verify returns.
var (
	ErrBadSignature = errors.New("webhook signature does not verify")
	ErrStale        = errors.New("webhook timestamp is outside the tolerance (a replay, or a clock far off)")
)

// Verify checks a delivery's headers against body, as a receiver must:
// the signature, and a timestamp within tolerance of now.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || h.Get(HeaderID) == "" {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	got := h.Get(HeaderSignature)
	if !strings.HasPrefix(got, signaturePrefix) || !hmac.Equal([]byte(got), []byte(Sign(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}
