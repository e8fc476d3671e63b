package fleet

import (
	"time"

	"github.com/vigil-ota/vigil/api/devicesig"
)

// Limits of device request authentication (api/devicesig has the format).
const (
	// MaxRequestSkew is how far a request's timestamp may be from the
	// server's clock, either way.
	MaxRequestSkew = 5 * time.Minute
	// MaxNonceLength bounds a nonce, in bytes.
	MaxNonceLength = 64
)

var (
	// SigningString is what a device signs.
	SigningString = devicesig.SigningString
	// DecodePublicKey parses a registered key.
	DecodePublicKey = devicesig.DecodePublicKey
)
