// Package client is the Go client of vigil-server's API: one typed method
// per route of package api, used by the vigil CLI (operator tokens) and by
// vigil-agent (requests signed with the device's key). Every failed request
// comes back as an *api.Error with the server's code, message and request
// id, so callers act on codes, never on message text.
//
// Timeouts: connection set-up and response headers are bounded; bodies are
// not (an upload may stream many GiB), except for device requests, which are
// small and bounded as a whole (DeviceRequestTimeout).
package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/auditchain"
	"github.com/vigil-ota/vigil/api/devicesig"
)

// Timeouts and limits, with their units.
const (
	DialTimeout           = 10 * time.Second
	ResponseHeaderTimeout = 5 * time.Minute
	// DeviceRequestTimeout bounds one check-in or event delivery.
	DeviceRequestTimeout = 30 * time.Second
	// MaxResponseBytes bounds a decoded JSON response.
	MaxResponseBytes = 64 << 20
)

// Client talks to one vigil-server, as an operator (Token) or as a device
// (NewDevice: every request signed with the device key).
type Client struct {
	Base  string // http(s)://host:port
	Token string // bearer token for management calls
	HTTP  *http.Client

	deviceID  string
	deviceKey ed25519.PrivateKey
	session   *deviceSession // nil: every device request is signed
	now       func() time.Time
}

// New returns an operator client for base with token.
func New(base, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: DialTimeout}).DialContext
	tr.ResponseHeaderTimeout = ResponseHeaderTimeout
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr}, now: time.Now}
}

// NewDevice returns a client that authenticates as device id with key
// (api/devicesig): it opens a session with a signed request and sends a
// session MAC with later requests (SignEveryRequest turns that off). A nil
// key sends unsigned requests, which the server refuses with
// api.CodeDeviceUnauthenticated.
func NewDevice(base, id string, key ed25519.PrivateKey) *Client {
	c := New(base, "")
	c.deviceID, c.deviceKey = id, key
	c.session = &deviceSession{}
	return c
}

// SignEveryRequest makes the device client sign each request with the
// device key instead of using a session.
func (c *Client) SignEveryRequest() { c.session = nil }

// WithBase returns a copy of c that talks to another server of the same
// deployment, sharing c's device session (every replica admits it).
func (c *Client) WithBase(base string) *Client {
	cp := *c
	cp.Base = base
	return &cp
}

// IsCode reports whether err is a server error with the given code.
func IsCode(err error, code string) bool {
	var e *api.Error
	return errors.As(err, &e) && e.Code == code
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, stream io.Reader, length int64, contentType string, out any) error {
	if c.deviceKey == nil {
		return c.roundTrip(ctx, method, path, body, stream, length, contentType, out, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, DeviceRequestTimeout)
	defer cancel()
	signed := func(req *http.Request) { devicesig.SignRequest(req, c.deviceID, c.deviceKey, body, c.now()) }
	if c.session == nil || stream != nil || path == api.RouteDeviceSession {
		return c.roundTrip(ctx, method, path, body, stream, length, contentType, out, signed)
	}
	for attempt := 0; ; attempt++ {
		ss, err := c.session.current(ctx, c)
		if err != nil {
			return err
		}
		if ss == nil { // the server has no sessions: sign each request
			return c.roundTrip(ctx, method, path, body, stream, length, contentType, out, signed)
		}
		err = c.roundTrip(ctx, method, path, body, stream, length, contentType, out, func(req *http.Request) {
			devicesig.SignSessionRequest(req, c.deviceID, ss.ticket, ss.key, body, c.now())
		})
		if attempt == 0 && IsCode(err, api.CodeSessionInvalid) {
			c.session.drop(ss) // expired early, key re-registered, or the servers' ticket key changed
			continue
		}
		return err
	}
}

// roundTrip sends one request, authenticated by auth (nil: the bearer
// token, if any), and decodes the answer into out.
func (c *Client) roundTrip(ctx context.Context, method, path string, body []byte, stream io.Reader, length int64, contentType string, out any, auth func(*http.Request)) error {
	var r io.Reader
	switch {
	case stream != nil:
		r = stream
	case body != nil:
		r, length = bytes.NewReader(body), int64(len(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, r)
	if err != nil {
		return err
	}
	if r != nil {
		req.ContentLength = length
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set(api.HeaderAuthorization, "Bearer "+c.Token)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &api.Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return e
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: bad response: %w", method, path, err)
		}
	}
	return nil
}

// call sends in as JSON (nil: no body) and decodes the answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return c.do(ctx, method, path, body, nil, -1, "application/json", out)
}

// Submit sends signed offline metadata for publishing.
func (c *Client) Submit(ctx context.Context, req api.SubmitRequest) (*api.SubmitResponse, error) {
	var out api.SubmitResponse
	return &out, c.call(ctx, http.MethodPost, api.RouteSubmit, req, &out)
}

// OnlineKeys returns the server's public snapshot and timestamp keys.
func (c *Client) OnlineKeys(ctx context.Context) (api.OnlineKeys, error) {
	var out api.OnlineKeys
	return out, c.call(ctx, http.MethodGet, api.RouteOnlineKeys, nil, &out)
}

// Upload streams an image of length bytes with the given sha256 to the
// repository. It reports whether the server stored it (false: already there).
func (c *Client) Upload(ctx context.Context, product, file, sha256hex string, length int64, r io.Reader) (bool, error) {
	q := url.Values{"sha256": {sha256hex}, "length": {strconv.FormatInt(length, 10)}}
	var out api.Uploaded
	err := c.do(ctx, http.MethodPut, api.Path(api.RouteUploadTarget, product, file)+"?"+q.Encode(), nil, r, length, "application/octet-stream", &out)
	return out.Stored, err
}

// PutSite creates or updates a site.
func (c *Client) PutSite(ctx context.Context, s api.Site) (api.SiteSaved, error) {
	var out api.SiteSaved
	return out, c.call(ctx, http.MethodPut, api.Path(api.RouteSite, s.Name), s, &out)
}

// RegisterDevices registers devices, all or none.
func (c *Client) RegisterDevices(ctx context.Context, ds []api.Device) (api.DevicesRegistered, error) {
	var out api.DevicesRegistered
	return out, c.call(ctx, http.MethodPost, api.RouteDevices, ds, &out)
}

// ImportDevices registers the devices of a CSV file, all or none.
func (c *Client) ImportDevices(ctx context.Context, csv []byte) (api.DevicesRegistered, error) {
	var out api.DevicesRegistered
	return out, c.do(ctx, http.MethodPost, api.RouteDeviceImport, csv, nil, -1, "text/csv", &out)
}

// Decommission retires a device and revokes its key.
func (c *Client) Decommission(ctx context.Context, id string) (api.Decommissioned, error) {
	var out api.Decommissioned
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteDecommission, id), nil, &out)
}

// DeviceEvents lists a device's events, oldest first (limit 0: the server's).
func (c *Client) DeviceEvents(ctx context.Context, id string, limit int) (api.DeviceEvents, error) {
	var out api.DeviceEvents
	path := api.Path(api.RouteDeviceEventList, id)
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// CreateRollout starts a rollout.
func (c *Client) CreateRollout(ctx context.Context, p api.RolloutPlan) (api.RolloutCreated, error) {
	var out api.RolloutCreated
	return out, c.call(ctx, http.MethodPost, api.RouteRollouts, p, &out)
}

// RolloutStatus reports a rollout per wave and site.
func (c *Client) RolloutStatus(ctx context.Context, id string) (api.RolloutStatus, error) {
	var out api.RolloutStatus
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteRollout, id), nil, &out)
}

// Rollout controls.
const (
	Pause  = "pause"
	Resume = "resume"
	Abort  = "abort"
)

// ControlRollout pauses, resumes or aborts a rollout.
func (c *Client) ControlRollout(ctx context.Context, id, action string) (api.RolloutState, error) {
	route := map[string]string{Pause: api.RouteRolloutPause, Resume: api.RouteRolloutResume, Abort: api.RouteRolloutAbort}[action]
	if route == "" {
		return api.RolloutState{}, fmt.Errorf("unknown rollout control %q", action)
	}
	var out api.RolloutState
	return out, c.call(ctx, http.MethodPost, api.Path(route, id), nil, &out)
}

// Approve records (or revokes) a site's approval of a wave.
func (c *Client) Approve(ctx context.Context, rollout string, a api.Approval) error {
	return c.call(ctx, http.MethodPost, api.Path(api.RouteApprovals, rollout), a, nil)
}

// Defer records a site's deferral of a wave.
func (c *Client) Defer(ctx context.Context, rollout string, d api.Deferral) error {
	return c.call(ctx, http.MethodPost, api.Path(api.RouteDeferrals, rollout), d, nil)
}

// HaltRelease halts every rollout of PRODUCT@VERSION.
func (c *Client) HaltRelease(ctx context.Context, release, reason string) (api.Halted, error) {
	var out api.Halted
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteReleaseHalt, release), api.HaltRequest{Reason: reason}, &out)
}

// CreateToken makes an operator token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, t api.TokenRequest) (api.TokenCreated, error) {
	var out api.TokenCreated
	return out, c.call(ctx, http.MethodPost, api.RouteTokens, t, &out)
}

// Tokens lists tokens.
func (c *Client) Tokens(ctx context.Context) (api.Tokens, error) {
	var out api.Tokens
	return out, c.call(ctx, http.MethodGet, api.RouteTokens, nil, &out)
}

// RevokeToken revokes a token at once.
func (c *Client) RevokeToken(ctx context.Context, id string) (api.TokenRevoked, error) {
	var out api.TokenRevoked
	return out, c.call(ctx, http.MethodDelete, api.Path(api.RouteToken, id), nil, &out)
}

// AuditPage fetches audit entries with seq > after (and time ≥ since, when
// set), at most limit.
func (c *Client) AuditPage(ctx context.Context, after int64, since string, limit int) ([]auditchain.Entry, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	if since != "" {
		q.Set("since", since)
	}
	var out api.AuditPage
	return out.Entries, c.call(ctx, http.MethodGet, api.RouteAudit+"?"+q.Encode(), nil, &out)
}

// CheckIn reports the device's installed version and returns its
// assignment, if any (device clients).
func (c *Client) CheckIn(ctx context.Context, in api.CheckIn) (*api.Assignment, error) {
	var out api.CheckInResponse
	return out.Assignment, c.call(ctx, http.MethodPost, api.RouteDeviceCheckIn, in, &out)
}

// SendEvents delivers a batch of the device's events (device clients).
func (c *Client) SendEvents(ctx context.Context, b api.EventBatch) (api.EventBatchResponse, error) {
	var out api.EventBatchResponse
	return out, c.call(ctx, http.MethodPost, api.RouteDeviceEvents, b, &out)
}

// DeviceQuery selects a page of devices.
type DeviceQuery struct {
	Site, CareArea, Product, Version, Prefix string
	Offset, Limit                            int
}

// Devices returns a page of devices.
func (c *Client) Devices(ctx context.Context, q DeviceQuery) (api.DevicePage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"site": q.Site, "care_area": q.CareArea, "product": q.Product, "version": q.Version, "q": q.Prefix} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := api.RouteDevices
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.DevicePage
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Rollouts lists the newest rollouts.
func (c *Client) Rollouts(ctx context.Context) (api.RolloutList, error) {
	var out api.RolloutList
	return out, c.call(ctx, http.MethodGet, api.RouteRollouts, nil, &out)
}
