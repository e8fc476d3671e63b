// Package api holds the wire types of vigil-server's HTTP API, shared by the
// server, the vigil CLI and vigil-agent. Changing a field here changes the
// protocol.
package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Paths.
const (
	// RepoPrefix serves the TUF repository: RepoPrefix+"/metadata/…" and
	// RepoPrefix+"/targets/…". Devices may read the same layout straight
	// from the bucket.
	RepoPrefix          = "/repo"
	PathSubmit          = "/api/v1/repo/metadata"
	PathOnlineKeys      = "/api/v1/repo/online-keys"
	PathUploadTarget    = "/api/v1/repo/targets" // + /PRODUCT/FILE?sha256=…&length=…
	HeaderRequestID     = "X-Request-ID"
	HeaderAuthorization = "Authorization"
)

// Device routes and the headers of a signed device request (see
// server/internal/fleet/auth.go for what is signed).
const (
	PathDeviceEvents  = "/api/v1/device/events"
	PathDeviceCheckIn = "/api/v1/device/checkin"
	HeaderDevice      = "X-Vigil-Device"
	HeaderTimestamp   = "X-Vigil-Timestamp"
	HeaderNonce       = "X-Vigil-Nonce"
	HeaderSignature   = "X-Vigil-Signature"
)

// CheckIn is what a device reports at each poll.
type CheckIn struct {
	Installed string `json:"installed_version"`
	State     string `json:"state"`
	Slot      string `json:"slot,omitempty"`
}

// Assignment is the at most one release a check-in answer hands out.
type Assignment struct {
	RolloutID string    `json:"rollout_id"`
	Target    string    `json:"target"`
	Version   string    `json:"version"`
	Wave      string    `json:"wave"`
	NotBefore time.Time `json:"not_before"`
	WindowEnd time.Time `json:"window_end,omitempty"`
}

// CheckInResponse answers a check-in.
type CheckInResponse struct {
	Assignment *Assignment `json:"assignment"`
}

// DeviceEvent is one state change of a device's install, reported by the
// agent. ID is stable for the same change, so a resent event is harmless.
type DeviceEvent struct {
	ID       string    `json:"id"`
	DeviceID string    `json:"device_id"`
	Target   string    `json:"target,omitempty"`
	Version  string    `json:"version,omitempty"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
}

// EventBatch is the body of POST PathDeviceEvents.
type EventBatch struct {
	Events []DeviceEvent `json:"events"`
}

// EventBatchResponse says how many events were new.
type EventBatchResponse struct {
	Accepted  int `json:"accepted"`
	Duplicate int `json:"duplicate"`
}

// Error is every failed request's body.
type Error struct {
	Status    int    `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("server refused (%d %s): %s [request %s]", e.Status, e.Code, e.Message, e.RequestID)
}

// Error codes the repository routes return (beyond the kinds' defaults).
const (
	CodeVersionConflict    = "version_conflict"
	CodeMetadataTooLarge   = "metadata_too_large"
	CodeVerificationFailed = "verification_failed"
)

// SubmitRequest carries signed TUF metadata made offline: a new root, a new
// top-level targets, and new product roles, each optional. The server
// verifies them against the trusted chain and publishes them, with a new
// snapshot and timestamp, as one repository version.
type SubmitRequest struct {
	Root     json.RawMessage            `json:"root,omitempty"`
	Targets  json.RawMessage            `json:"targets,omitempty"`
	Products map[string]json.RawMessage `json:"products,omitempty"`
}

// SubmitResponse reports the versions now published.
type SubmitResponse struct {
	Versions map[string]int64 `json:"versions"`
}

// OnlineKeys are the public halves of the server's snapshot and timestamp
// keys, as TUF key objects, for building a root.
type OnlineKeys struct {
	Snapshot    json.RawMessage `json:"snapshot"`
	SnapshotID  string          `json:"snapshot_keyid"`
	Timestamp   json.RawMessage `json:"timestamp"`
	TimestampID string          `json:"timestamp_keyid"`
}
