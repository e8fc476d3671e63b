package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Body limits, in bytes, and how long reading a body may take.
const (
	MaxDeviceBodyBytes = 1 << 20
	MaxImportBytes     = 64 << 20
	// DefaultBodyReadTimeout bounds reading a JSON or CSV body (finding
	// 8: a client trickling a body must not hold a connection for ever);
	// an image upload may take longer but may not stall that long between
	// reads. The server's body_read_timeout setting overrides it.
	DefaultBodyReadTimeout = 60 * time.Second
)

// bodyTimeout is the configured body read timeout of this request.
func bodyTimeout(c *gin.Context) time.Duration {
	if d := c.GetDuration(ginKeyBodyTimeout); d > 0 {
		return d
	}
	return DefaultBodyReadTimeout
}

// idleDeadlineReader pushes the connection's read deadline forward on every
// read, so a long upload may take its time but a stalled one ends.
type idleDeadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (d *idleDeadlineReader) Read(p []byte) (int, error) {
	d.rc.SetReadDeadline(time.Now().Add(d.idle))
	n, err := d.r.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = apperr.Wrap(err, apperr.Invalid, "the upload stalled: no data for %s", d.idle).WithCode("body_timeout")
	}
	return n, err
}

// uploadBody is the request body with the idle deadline applied.
func uploadBody(c *gin.Context) io.Reader {
	return &idleDeadlineReader{r: c.Request.Body, rc: http.NewResponseController(c.Writer), idle: bodyTimeout(c)}
}

// Fleet is what the fleet routes need (fleet.Service).
type Fleet interface {
	PreAuthenticate(ctx context.Context, r fleet.DeviceRequest) error
	AuthenticateAt(ctx context.Context, r fleet.DeviceRequest) (state.Device, time.Time, error)
	CheckIn(ctx context.Context, dev state.Device, in api.CheckIn, signedAt time.Time) (*api.Assignment, error)
	Ingest(ctx context.Context, dev state.Device, b api.EventBatch) (api.EventBatchResponse, error)
	Events(ctx context.Context, device string, limit int) ([]api.DeviceEvent, error)
	PutSite(ctx context.Context, in fleet.SiteInput) error
	RegisterDevices(ctx context.Context, ins []fleet.DeviceInput) error
	Decommission(ctx context.Context, id string) error
	CreateRollout(ctx context.Context, in fleet.PlanInput) (state.Rollout, error)
	Status(ctx context.Context, id string) (fleet.RolloutStatus, error)
	Control(ctx context.Context, id, action string) (state.Rollout, error)
	Approve(ctx context.Context, id string, in fleet.ApprovalInput) error
	Defer(ctx context.Context, id string, in fleet.DeferralInput) error
	HaltRelease(ctx context.Context, rel, reason string) ([]string, error)
}

const (
	ginKeyDevice   = "vigil.device"
	ginKeySignedAt = "vigil.signed_at"
	ginKeyBody     = "vigil.body"
	// ginKeyBodyTimeout carries Deps.BodyReadTimeout to the handlers.
	ginKeyBodyTimeout = "vigil.body_timeout"
)

// readBody reads a request body of at most limit bytes within
// BodyReadTimeout: over the limit is 413, a body that does not arrive in
// time is 408.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, apperr.New(apperr.TooLarge, "request body of %d bytes is over the limit of %d", c.Request.ContentLength, limit)
	}
	timeout := bodyTimeout(c)
	http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(timeout))
	defer http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, apperr.Wrap(err, apperr.TooLarge, "request body over the limit of %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, apperr.Wrap(err, apperr.Invalid, "the request body did not arrive within %s", timeout).WithCode("body_timeout")
	case err != nil:
		return nil, apperr.Wrap(err, apperr.Invalid, "reading the request body: %v", err)
	}
	return body, nil
}

// deviceAuth verifies a signed device request; changesState adds replay
// protection. The headers are checked (device known, timestamp in the
// window) before a byte of the body is read.
func deviceAuth(f Fleet, changesState bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := fleet.DeviceRequest{
			Method: c.Request.Method, Path: c.Request.URL.Path, DeviceID: c.GetHeader(api.HeaderDevice),
			Timestamp: c.GetHeader(api.HeaderTimestamp), Nonce: c.GetHeader(api.HeaderNonce), Signature: c.GetHeader(api.HeaderSignature),
			ChangesState: changesState,
		}
		if err := f.PreAuthenticate(c.Request.Context(), r); err != nil {
			WriteError(c, err)
			return
		}
		body, err := readBody(c, MaxDeviceBodyBytes)
		if err != nil {
			WriteError(c, err)
			return
		}
		r.Body = body
		dev, signedAt, err := f.AuthenticateAt(c.Request.Context(), r)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Set(ginKeyDevice, dev)
		c.Set(ginKeySignedAt, signedAt)
		c.Set(ginKeyBody, body)
		c.Next()
	}
}

func decodeBody(c *gin.Context, v any) bool {
	b, _ := c.Get(ginKeyBody)
	body, _ := b.([]byte)
	if body == nil {
		var err error
		if body, err = readBody(c, MaxDeviceBodyBytes); err != nil {
			WriteError(c, err)
			return false
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		WriteError(c, apperr.Wrap(err, apperr.Invalid, "the body is not valid JSON for this request: %v", err))
		return false
	}
	return true
}

func respond(c *gin.Context, status int, v any, err error) {
	if err != nil {
		WriteError(c, err)
		return
	}
	c.JSON(status, v)
}

// RegisterFleet adds the device routes (signed by devices) and the fleet
// and rollout management routes (bootstrap token).
func RegisterFleet(r *gin.Engine, f Fleet, auth Authenticator) {
	device := func(c *gin.Context) state.Device { v, _ := c.Get(ginKeyDevice); return v.(state.Device) }
	r.POST(api.PathDeviceCheckIn, deviceAuth(f, false), func(c *gin.Context) {
		var in api.CheckIn
		if !decodeBody(c, &in) {
			return
		}
		a, err := f.CheckIn(c.Request.Context(), device(c), in, c.GetTime(ginKeySignedAt))
		respond(c, http.StatusOK, api.CheckInResponse{Assignment: a}, err)
	})
	r.POST(api.PathDeviceEvents, deviceAuth(f, true), func(c *gin.Context) {
		var b api.EventBatch
		if !decodeBody(c, &b) {
			return
		}
		res, err := f.Ingest(c.Request.Context(), device(c), b)
		respond(c, http.StatusOK, res, err)
	})

	m := r.Group("/api/v1")
	need := func(method, path string, perm operator.Permission) gin.HandlerFunc {
		return authorize(auth, method, "/api/v1"+path, perm)
	}
	m.GET("/devices/:id/events", need("GET", "/devices/:id/events", operator.PermRead), func(c *gin.Context) {
		limit, _ := strconv.Atoi(c.Query("limit"))
		evs, err := f.Events(c.Request.Context(), c.Param("id"), limit)
		respond(c, http.StatusOK, gin.H{"events": evs}, err)
	})
	m.PUT("/sites/:name", need("PUT", "/sites/:name", operator.PermSiteWrite), func(c *gin.Context) {
		var in fleet.SiteInput
		if !decodeBody(c, &in) {
			return
		}
		in.Name = c.Param("name")
		respond(c, http.StatusOK, gin.H{"site": in.Name}, f.PutSite(c.Request.Context(), in))
	})
	m.POST("/devices", need("POST", "/devices", operator.PermFleetWrite), func(c *gin.Context) {
		var ins []fleet.DeviceInput
		if !decodeBody(c, &ins) {
			return
		}
		respond(c, http.StatusCreated, gin.H{"registered": len(ins)}, f.RegisterDevices(c.Request.Context(), ins))
	})
	m.POST("/devices/import", need("POST", "/devices/import", operator.PermFleetWrite), func(c *gin.Context) {
		body, err := readBody(c, MaxImportBytes)
		if err != nil {
			WriteError(c, err)
			return
		}
		ins, err := fleet.ParseCSV(bytes.NewReader(body))
		if err == nil {
			err = f.RegisterDevices(c.Request.Context(), ins)
		}
		respond(c, http.StatusCreated, gin.H{"registered": len(ins)}, err)
	})
	m.POST("/devices/:id/decommission", need("POST", "/devices/:id/decommission", operator.PermFleetWrite), func(c *gin.Context) {
		respond(c, http.StatusOK, gin.H{"decommissioned": c.Param("id")}, f.Decommission(c.Request.Context(), c.Param("id")))
	})
	m.POST("/rollouts", need("POST", "/rollouts", operator.PermRolloutWrite), func(c *gin.Context) {
		var in fleet.PlanInput
		if !decodeBody(c, &in) {
			return
		}
		ro, err := f.CreateRollout(c.Request.Context(), in)
		respond(c, http.StatusCreated, gin.H{"id": ro.ID, "target": ro.Target, "state": ro.State}, err)
	})
	m.GET("/rollouts/:id", need("GET", "/rollouts/:id", operator.PermRead), func(c *gin.Context) {
		st, err := f.Status(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, st, err)
	})
	for _, action := range []string{"pause", "resume", "abort"} {
		m.POST("/rollouts/:id/"+action, need("POST", "/rollouts/:id/"+action, operator.PermRolloutWrite), func(c *gin.Context) {
			ro, err := f.Control(c.Request.Context(), c.Param("id"), action)
			respond(c, http.StatusOK, gin.H{"id": ro.ID, "state": ro.State}, err)
		})
	}
	m.POST("/rollouts/:id/approvals", need("POST", "/rollouts/:id/approvals", operator.PermRolloutReview), func(c *gin.Context) {
		var in fleet.ApprovalInput
		if !decodeBody(c, &in) {
			return
		}
		respond(c, http.StatusOK, gin.H{"ok": true}, f.Approve(c.Request.Context(), c.Param("id"), in))
	})
	m.POST("/rollouts/:id/deferrals", need("POST", "/rollouts/:id/deferrals", operator.PermRolloutReview), func(c *gin.Context) {
		var in fleet.DeferralInput
		if !decodeBody(c, &in) {
			return
		}
		respond(c, http.StatusOK, gin.H{"ok": true}, f.Defer(c.Request.Context(), c.Param("id"), in))
	})
	m.POST("/releases/:release/halt", need("POST", "/releases/:release/halt", operator.PermRolloutWrite), func(c *gin.Context) {
		var in struct {
			Reason string `json:"reason"`
		}
		if !decodeBody(c, &in) {
			return
		}
		ids, err := f.HaltRelease(c.Request.Context(), c.Param("release"), in.Reason)
		respond(c, http.StatusOK, gin.H{"halted": ids}, err)
	})
}

// TokenAdmin is what the token routes need (operator.Service).
type TokenAdmin interface {
	Create(ctx context.Context, in operator.TokenInput) (operator.Created, error)
	Revoke(ctx context.Context, id string) error
	List(ctx context.Context) ([]state.Token, error)
}

// RegisterTokens adds token management (admin).
func RegisterTokens(r *gin.Engine, t TokenAdmin, auth Authenticator) {
	r.POST("/api/v1/tokens", authorize(auth, "POST", "/api/v1/tokens", operator.PermTokens), func(c *gin.Context) {
		var in operator.TokenInput
		if !decodeBody(c, &in) {
			return
		}
		tok, err := t.Create(c.Request.Context(), in)
		respond(c, http.StatusCreated, tok, err)
	})
	r.GET("/api/v1/tokens", authorize(auth, "GET", "/api/v1/tokens", operator.PermTokens), func(c *gin.Context) {
		ts, err := t.List(c.Request.Context())
		respond(c, http.StatusOK, gin.H{"tokens": ts}, err)
	})
	r.DELETE("/api/v1/tokens/:id", authorize(auth, "DELETE", "/api/v1/tokens/:id", operator.PermTokens), func(c *gin.Context) {
		respond(c, http.StatusOK, gin.H{"revoked": c.Param("id")}, t.Revoke(c.Request.Context(), c.Param("id")))
	})
}
