// Package api is the whole HTTP contract between vigil-server and its two
// clients, the vigil CLI and vigil-agent: every route (as a pattern with
// :params), every request and response body, the install states devices
// report, and the stable error codes. Changing anything here changes the
// protocol; the server, api/client and the OpenAPI document are built from
// (or tested against) these declarations.
//
// Nothing here knows HTTP frameworks or storage: plain types and constants.
package api

import (
	"fmt"
	"net/url"
	"strings"
)

// APIPrefix starts every management and device route; RepoPrefix serves the
// TUF repository (RepoPrefix+"/metadata/…" and RepoPrefix+"/targets/…"),
// which devices may also read straight from the bucket.
const (
	APIPrefix  = "/api/v1"
	RepoPrefix = "/repo"
)

// Routes, as patterns: ":name" is one path segment, filled in by Path.
const (
	// The TUF repository (public; GET and HEAD).
	RouteRepoMetadata = RepoPrefix + "/metadata/*path"
	RouteRepoTargets  = RepoPrefix + "/targets/*path"

	// Repository management (release engineers).
	RouteSubmit       = APIPrefix + "/repo/metadata"               // POST SubmitRequest → SubmitResponse
	RouteOnlineKeys   = APIPrefix + "/repo/online-keys"            // GET → OnlineKeys
	RouteUploadTarget = APIPrefix + "/repo/targets/:product/:file" // PUT ?sha256=&length= → Uploaded

	// Devices (signed by the device's key).
	RouteDeviceCheckIn = APIPrefix + "/device/checkin" // POST CheckIn → CheckInResponse
	RouteDeviceEvents  = APIPrefix + "/device/events"  // POST EventBatch → EventBatchResponse
	RouteDeviceSession = APIPrefix + "/device/session" // POST SessionRequest (signed with the device key) → Session

	// The fleet.
	RouteSite            = APIPrefix + "/sites/:name"              // PUT Site → SiteSaved
	RouteDevices         = APIPrefix + "/devices"                  // POST []Device → DevicesRegistered; GET ?site=&care_area=&product=&version=&q=&offset=&limit= → DevicePage
	RouteDeviceImport    = APIPrefix + "/devices/import"           // POST CSV → DevicesRegistered
	RouteDeviceEventList = APIPrefix + "/devices/:id/events"       // GET ?limit= → DeviceEvents
	RouteDecommission    = APIPrefix + "/devices/:id/decommission" // POST → Decommissioned
	RouteRollouts        = APIPrefix + "/rollouts"                 // POST RolloutPlan → RolloutCreated; GET → RolloutList
	RouteRollout         = APIPrefix + "/rollouts/:id"             // GET → RolloutStatus
	RouteRolloutPause    = APIPrefix + "/rollouts/:id/pause"       // POST → RolloutState
	RouteRolloutResume   = APIPrefix + "/rollouts/:id/resume"      // POST → RolloutState
	RouteRolloutAbort    = APIPrefix + "/rollouts/:id/abort"       // POST → RolloutState
	RouteApprovals       = APIPrefix + "/rollouts/:id/approvals"   // POST Approval → Done
	RouteDeferrals       = APIPrefix + "/rollouts/:id/deferrals"   // POST Deferral → Done
	RouteReleaseHalt     = APIPrefix + "/releases/:release/halt"   // POST HaltRequest → Halted

	// Operators and records.
	RouteTokens = APIPrefix + "/tokens"     // POST TokenRequest → TokenCreated; GET → Tokens
	RouteToken  = APIPrefix + "/tokens/:id" // DELETE → TokenRevoked
	RouteAudit  = APIPrefix + "/audit"      // GET ?after=&since=&limit= → AuditPage
)

// Path fills a route's ":param" and "*param" segments, in order, with
// path-escaped values: Path(RouteRollout, "ro-1") = "/api/v1/rollouts/ro-1".
func Path(route string, params ...string) string {
	segs := strings.Split(route, "/")
	i := 0
	for k, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			if i >= len(params) {
				panic(fmt.Sprintf("api.Path(%q): %d parameters given, more needed", route, len(params)))
			}
			segs[k] = url.PathEscape(params[i])
			i++
		}
	}
	if i != len(params) {
		panic(fmt.Sprintf("api.Path(%q): %d parameters given, %d used", route, len(params), i))
	}
	return strings.Join(segs, "/")
}

// Headers.
const (
	HeaderRequestID     = "X-Request-ID"
	HeaderAuthorization = "Authorization"
	// A signed device request (api/devicesig has what is signed).
	HeaderDevice    = "X-Vigil-Device"
	HeaderTimestamp = "X-Vigil-Timestamp"
	HeaderNonce     = "X-Vigil-Nonce"
	HeaderSignature = "X-Vigil-Signature"
	// HeaderSession carries a session ticket; HeaderSignature then holds
	// the session MAC instead of a signature (api/devicesig).
	HeaderSession = "X-Vigil-Session"
)

// Error is every failed request's body (and, in Go clients, the error
// value): Code is stable and machine-readable, Message is for people.
type Error struct {
	Status    int    `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("server refused (%d %s): %s [request %s]", e.Status, e.Code, e.Message, e.RequestID)
}

// Error codes. Each error kind has a default code (invalid_argument,
// not_found, conflict, unauthenticated, permission_denied, unavailable,
// too_large, verification_failed, internal); these name specific cases a
// client may act on.
const (
	CodeInvalid            = "invalid_argument"
	CodeNotFound           = "not_found"
	CodeConflict           = "conflict"
	CodeUnauthenticated    = "unauthenticated"
	CodePermissionDenied   = "permission_denied"
	CodeUnavailable        = "unavailable"
	CodeTooLarge           = "too_large"
	CodeVerificationFailed = "verification_failed"
	CodeInternal           = "internal"

	CodeVersionConflict       = "version_conflict"       // re-read the repository, sign again
	CodeNotInitialised        = "not_initialised"        // run vigil repo init
	CodeSigningNotConfigured  = "signing_not_configured" // the server has no online keys
	CodeMetadataTooLarge      = "metadata_too_large"
	CodeHashMismatch          = "hash_mismatch"
	CodeSizeMismatch          = "size_mismatch"
	CodeUploadIncomplete      = "upload_incomplete"
	CodeBodyTimeout           = "body_timeout"
	CodeRangeNotSatisfiable   = "range_not_satisfiable"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeObjectNotFound        = "object_not_found"
	CodeDeviceUnauthenticated = "device_unauthenticated" // the device key, clock or registration is wrong
	CodeSessionInvalid        = "device_session_invalid" // open a new session with a request signed by the device key
	CodeReplayedRequest       = "replayed_request"
	CodeDeviceExists          = "device_exists"
	CodeStaleRollout          = "stale_rollout"
	CodeBadTransition         = "bad_transition"
	CodeWaveStarted           = "wave_started"
	CodeBootstrapRetired      = "bootstrap_retired"
	CodeKnownExploited        = "known_exploited_vulnerability" // fix it, or accept it with a reason
	CodeFeedMalformed         = "feed_malformed"
	CodeAlreadyInitialised    = "already_initialised"
)

// Done answers a request that has nothing else to say.
type Done struct {
	OK bool `json:"ok"`
}
