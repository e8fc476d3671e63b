package fleet

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"regexp"
	"strconv"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Limits of device request authentication (api/devicesig has the format).
const (
	// MaxRequestSkew is how far a request's timestamp may be from the
	// server's clock, either way.
	MaxRequestSkew = 5 * time.Minute
	// MaxNonceLength bounds a nonce, in bytes.
	MaxNonceLength = 64
	// NonceLifetime keeps nonces as long as a timestamp can be accepted.
	NonceLifetime = 2 * MaxRequestSkew
)

var (
	// SigningString is what a device signs.
	SigningString = devicesig.SigningString
	// DecodePublicKey parses a registered key.
	DecodePublicKey = devicesig.DecodePublicKey
	// nonceRE: a nonce is a token, never something that could shift the
	// newline-separated fields of the signing string.
	nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,` + strconv.Itoa(MaxNonceLength) + `}$`)
)

// DeviceRequest is a signed request as the HTTP layer saw it.
type DeviceRequest struct {
	Method, Path, DeviceID, Timestamp, Nonce, Signature string
	// Session is the session ticket when the request is authenticated by
	// a session MAC instead of a signature.
	Session string
	Body    []byte
	// ChangesState asks for nonce replay protection.
	ChangesState bool
}

// Authenticated is a device whose request verified, and the time it
// signed into it.
type Authenticated struct {
	state.Device
	SignedAt time.Time
	// ViaSession: the request carried a session MAC, not a signature.
	ViaSession bool
}

// DeviceAuth verifies devices' signed requests (the package doc has its
// rules).
type DeviceAuth struct {
	cache   *cache
	nonces  state.NonceStore
	clock   *clock
	tickets *tickets
}

func unauthenticated(format string, args ...any) error {
	return apperr.New(apperr.Unauthorized, format, args...).WithCode(api.CodeDeviceUnauthenticated)
}

// PreAuthenticate checks what a signed request's headers say before its
// body is read: a well-formed device id and nonce, a timestamp inside the
// skew window, a registered device that is not decommissioned. Only then is
// a body worth reading; Authenticate checks the signature over it.
func (a *DeviceAuth) PreAuthenticate(ctx context.Context, r DeviceRequest) error {
	_, _, err := a.checkHeaders(ctx, r)
	return err
}

func (a *DeviceAuth) checkHeaders(ctx context.Context, r DeviceRequest) (state.Device, int64, error) {
	if !deviceID.MatchString(r.DeviceID) || !nonceRE.MatchString(r.Nonce) {
		return state.Device{}, 0, unauthenticated("the request is not signed by a device (missing or malformed %s/%s)", api.HeaderDevice, api.HeaderNonce)
	}
	if len(r.Session) > devicesig.MaxTicketLength {
		return state.Device{}, 0, sessionInvalid("%s is %d bytes; a ticket is at most %d", api.HeaderSession, len(r.Session), devicesig.MaxTicketLength)
	}
	ts, err := strconv.ParseInt(r.Timestamp, 10, 64)
	if err != nil {
		return state.Device{}, 0, unauthenticated("%s is not a Unix time", api.HeaderTimestamp)
	}
	if d := a.clock.Now().Sub(time.Unix(ts, 0)); d > MaxRequestSkew || d < -MaxRequestSkew {
		return state.Device{}, 0, unauthenticated("the request's timestamp is %s away from the server's clock (limit %s)", d.Round(time.Second), MaxRequestSkew)
	}
	dev, err := a.cache.device(ctx, r.DeviceID)
	if apperr.Is(err, apperr.NotFound) {
		return state.Device{}, 0, unauthenticated("device is not registered")
	}
	if err != nil {
		return state.Device{}, 0, err
	}
	if _, ok := DecodePublicKey(dev.PublicKey); dev.Decommissioned || !ok {
		return state.Device{}, 0, unauthenticated("device is decommissioned")
	}
	return dev, ts, nil
}

// Authenticate verifies a device's signed request and returns the device
// and the time it signed.
func (a *DeviceAuth) Authenticate(ctx context.Context, r DeviceRequest) (Authenticated, error) {
	dev, ts, err := a.checkHeaders(ctx, r)
	if err != nil {
		return Authenticated{}, err
	}
	if r.Session != "" {
		if err := a.verifySession(ctx, r, dev, ts); err != nil {
			return Authenticated{}, err
		}
	} else {
		pub, _ := DecodePublicKey(dev.PublicKey)
		sig, err := base64.StdEncoding.DecodeString(r.Signature)
		if err != nil || !ed25519.Verify(pub, SigningString(r.Method, r.Path, ts, r.Nonce, r.Body), sig) {
			return Authenticated{}, unauthenticated("the request's signature does not verify with the device's key")
		}
	}
	if r.ChangesState {
		now := a.clock.Now()
		if err := a.nonces.UseNonce(ctx, dev.ID, r.Nonce, now, now.Add(NonceLifetime)); err != nil {
			return Authenticated{}, err
		}
	}
	return Authenticated{Device: dev, SignedAt: time.Unix(ts, 0), ViaSession: r.Session != ""}, nil
}
