package httpapi

import (
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/operator"
)

// authorize admits a request whose bearer token holds perm, and records
// who acts (for the audit log and site scoping). Deny by default.
func authorize(auth Authenticator, perm operator.Permission) gin.HandlerFunc {
	return func(c *gin.Context) {
		// RFC 6750: "Bearer TOKEN"; a bare token is not accepted (finding 13).
		scheme, bearer, _ := strings.Cut(c.GetHeader(api.HeaderAuthorization), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			bearer = ""
		}
		p, err := auth.Authenticate(c.Request.Context(), strings.TrimSpace(bearer))
		if err != nil {
			WriteError(c, err)
			return
		}
		if !p.Can(perm) {
			WriteError(c, apperr.New(apperr.Forbidden, "role %s may not do this (needs %s)", p.Role, perm))
			return
		}
		ctx := operator.WithPrincipal(audit.WithActor(c.Request.Context(), p.Name), p)
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}

// deviceAuth verifies a signed device request; changesState adds replay
// protection. The headers are checked (device known, timestamp in the
// window) before a byte of the body is read.
func deviceAuth(auth DeviceAuth, changesState bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := fleet.DeviceRequest{
			Method: c.Request.Method, Path: c.Request.URL.Path, DeviceID: c.GetHeader(api.HeaderDevice),
			Timestamp: c.GetHeader(api.HeaderTimestamp), Nonce: c.GetHeader(api.HeaderNonce), Signature: c.GetHeader(api.HeaderSignature),
			ChangesState: changesState,
		}
		if err := auth.PreAuthenticate(c.Request.Context(), r); err != nil {
			WriteError(c, err)
			return
		}
		body, err := readBody(c, MaxJSONBodyBytes)
		if err != nil {
			WriteError(c, err)
			return
		}
		r.Body = body
		dev, err := auth.Authenticate(c.Request.Context(), r)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Set(ginKeyDevice, dev)
		c.Set(ginKeyBody, body)
		c.Next()
	}
}

// device is the authenticated device of a Device route.
func device(c *gin.Context) fleet.Authenticated {
	v, _ := c.Get(ginKeyDevice)
	return v.(fleet.Authenticated)
}
