package httpapi

import (
	"net/http"
	"net/url"
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

// deviceAuth verifies a signed (or session) device request; changesState adds replay
// protection. The headers are checked (device known, timestamp in the
// window) before a byte of the body is read.
func deviceAuth(auth DeviceAuth, changesState bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := fleet.DeviceRequest{
			Method: c.Request.Method, Path: c.Request.URL.Path, DeviceID: c.GetHeader(api.HeaderDevice),
			Timestamp: c.GetHeader(api.HeaderTimestamp), Nonce: c.GetHeader(api.HeaderNonce), Signature: c.GetHeader(api.HeaderSignature),
			Session: c.GetHeader(api.HeaderSession), ChangesState: changesState,
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

// Console session cookie and form field names.
const (
	SessionCookie = "vigil_session"
	CSRFField     = "csrf"
	// PathSignIn is where a request without a session is sent.
	PathSignIn = "/console/sign-in"
	// MaxFormBytes bounds a console form body.
	MaxFormBytes  = 64 << 10
	ginKeySession = "vigil.session"
)

// sessionAuth admits a console request with a live session whose role
// holds perm; a request that changes state must carry the session's CSRF
// token in its form. A page asked for without a session redirects to the
// sign-in page.
func sessionAuth(sessions Sessions, perm operator.Permission, refuse SessionRefusal) gin.HandlerFunc {
	if refuse == nil {
		refuse = func(c *gin.Context, status int, err error) { writeError(c, status, err) }
	}
	return func(c *gin.Context) {
		id, _ := c.Cookie(SessionCookie)
		ss, err := sessions.SessionFor(c.Request.Context(), id)
		if err != nil {
			if apperr.Is(err, apperr.Unauthorized) && (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead) {
				c.Redirect(http.StatusSeeOther, PathSignIn+"?next="+url.QueryEscape(c.Request.URL.RequestURI()))
				c.Abort()
				return
			}
			refuse(c, StatusOf(err), err)
			c.Abort()
			return
		}
		p := ss.Principal
		if !p.Can(perm) {
			refuse(c, http.StatusForbidden, apperr.New(apperr.Forbidden, "role %s may not do this (needs %s)", p.Role, perm))
			c.Abort()
			return
		}
		if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxFormBytes)
			if !ss.CheckCSRF(c.PostForm(CSRFField)) {
				refuse(c, http.StatusForbidden, apperr.New(apperr.Forbidden, "this form is not from your session (CSRF token missing or wrong): reload the page and try again"))
				c.Abort()
				return
			}
		}
		ctx := operator.WithPrincipal(audit.WithActor(c.Request.Context(), p.Name), p)
		c.Request = c.Request.WithContext(ctx)
		c.Set(ginKeySession, ss)
		c.Next()
	}
}

// SessionOf is the signed-in session of a Session route.
func SessionOf(c *gin.Context) operator.Session {
	v, _ := c.Get(ginKeySession)
	ss, _ := v.(operator.Session)
	return ss
}
