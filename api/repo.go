package api

import "encoding/json"

// SubmitRequest carries signed TUF metadata made offline: a new root, a new
// top-level targets, and new product roles, each optional. The server
// verifies them against the trusted chain and publishes them, with a new
// snapshot and timestamp, as one repository version.
type SubmitRequest struct {
	Root     json.RawMessage            `json:"root,omitempty"`
	Targets  json.RawMessage            `json:"targets,omitempty"`
	Products map[string]json.RawMessage `json:"products,omitempty"`
	// Accept lists KEV-listed vulnerabilities a new release's SBOM still
	// carries that the release engineer accepts, each with a reason (the
	// server refuses such a release otherwise, and audits each one).
	Accept []AcceptedVulnerability `json:"accept_known_vulnerabilities,omitempty"`
	// Reason says why; required when a product role drops releases (a
	// revoke). Incident names the incident the publish belongs to. Both
	// are audited.
	Reason   string `json:"reason,omitempty"`
	Incident string `json:"incident,omitempty"`
	// Revoke names the releases (PRODUCT@VERSION) the submission
	// withdraws: the new product role drops their targets (image and
	// SBOM). Any other dropped target is refused (published releases are
	// immutable). Needs Reason.
	Revoke []string `json:"revoke,omitempty"`
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
	// The keys a pending online-key rotation moves to (snapshot_key_next,
	// timestamp_key_next); empty when none is configured.
	NextSnapshot    json.RawMessage `json:"next_snapshot,omitempty"`
	NextSnapshotID  string          `json:"next_snapshot_keyid,omitempty"`
	NextTimestamp   json.RawMessage `json:"next_timestamp,omitempty"`
	NextTimestampID string          `json:"next_timestamp_keyid,omitempty"`
}

// Uploaded answers an image upload: Stored is false when the same image
// was already there.
type Uploaded struct {
	Stored bool `json:"stored"`
}
