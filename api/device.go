package api

import "time"

// InstallState is a state of a device's install, as its agent journals it
// and reports it in events (docs/agent.md), plus the server's "assigned"
// (handed out, nothing reported yet). One type for the agent's journal, the
// server's event ingest and the rollout rules.
type InstallState string

// Install states.
const (
	StateIdle        InstallState = "idle"
	StateDownloading InstallState = "downloading"
	StateVerified    InstallState = "verified"
	StateDeferred    InstallState = "deferred" // in clinical use: never a failure
	StateStaging     InstallState = "staging"
	StateStaged      InstallState = "staged"
	StateSwitching   InstallState = "switching"
	StateSwitched    InstallState = "switched"
	StateCommitting  InstallState = "committing"
	StateCommitted   InstallState = "committed"
	StateRollingBack InstallState = "rolling_back"
	StateRolledBack  InstallState = "rolled_back"
	StateFailed      InstallState = "failed"
	// StateAssigned is the server's own: the release was handed out and
	// the device has reported nothing about it yet. Devices never send it.
	StateAssigned InstallState = "assigned"
)

// ReportedStates are the states an agent reports, in the order of an install.
var ReportedStates = []InstallState{StateIdle, StateDownloading, StateVerified, StateDeferred, StateStaging, StateStaged,
	StateSwitching, StateSwitched, StateCommitting, StateCommitted, StateRollingBack, StateRolledBack, StateFailed}

// Reported reports whether s is a state an agent may report.
func (s InstallState) Reported() bool {
	for _, r := range ReportedStates {
		if s == r {
			return true
		}
	}
	return false
}

// Final reports whether an install attempt ended in s.
func (s InstallState) Final() bool {
	return s == StateCommitted || s == StateRolledBack || s == StateFailed
}

// Failure reports whether s counts toward a rollout's halt rule. Deferred
// never does: a device in clinical use is doing its job.
func (s InstallState) Failure() bool { return s == StateRolledBack || s == StateFailed }

// CheckIn is what a device reports at each poll.
type CheckIn struct {
	Installed string       `json:"installed_version"`
	State     InstallState `json:"state"`
	Slot      string       `json:"slot,omitempty"`
}

// Assignment is the at most one release a check-in answer hands out.
type Assignment struct {
	RolloutID string    `json:"rollout_id"`
	Target    string    `json:"target"`
	Version   string    `json:"version"`
	Wave      string    `json:"wave"`
	NotBefore time.Time `json:"not_before"`
	WindowEnd time.Time `json:"window_end,omitempty"`
	// Delta names the signed delta target that rebuilds Target from the
	// device's reported installed version, when one is published. The
	// agent takes a delta only through TUF and only when its base is the
	// image it keeps (docs/delta.md); otherwise it fetches Target.
	Delta string `json:"delta,omitempty"`
}

// CheckInResponse answers a check-in.
type CheckInResponse struct {
	Assignment *Assignment `json:"assignment"`
}

// DeviceEvent is one state change of a device's install, reported by the
// agent. ID is stable for the same change, so a resent event is harmless.
type DeviceEvent struct {
	ID       string       `json:"id"`
	DeviceID string       `json:"device_id"`
	Target   string       `json:"target,omitempty"`
	Version  string       `json:"version,omitempty"`
	State    InstallState `json:"state"`
	Reason   string       `json:"reason,omitempty"`
	Time     time.Time    `json:"time"`
}

// EventBatch is the body of POST RouteDeviceEvents.
type EventBatch struct {
	Events []DeviceEvent `json:"events"`
}

// EventBatchResponse says how many events were new.
type EventBatchResponse struct {
	Accepted  int `json:"accepted"`
	Duplicate int `json:"duplicate"`
}

// DeviceEvents lists one device's events (GET RouteDeviceEventList).
type DeviceEvents struct {
	Events []DeviceEvent `json:"events"`
}

// SessionRequest opens a device session (RouteDeviceSession); it must be
// signed with the device's key, not sent within another session.
type SessionRequest struct {
	PublicKey string `json:"public_key"` // the device's fresh X25519 public key, base64
}

// Session is a new device session: the device derives the key from its
// X25519 private key and ServerPublicKey (devicesig.SessionKey) and sends
// Ticket with each request until ExpiresInSeconds have passed.
type Session struct {
	ServerPublicKey  string `json:"server_public_key"`
	Ticket           string `json:"ticket"`
	ExpiresInSeconds int64  `json:"expires_in_seconds"`
}
