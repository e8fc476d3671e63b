package api

import "time"

// Site is a hospital site as operators describe it (PUT RouteSite).
type Site struct {
	Name        string   `json:"name"`
	TimeZone    string   `json:"time_zone"`
	Windows     []string `json:"windows"`
	CareAreas   []string `json:"care_areas"`
	SiteCap     int      `json:"site_cap"`
	CareAreaCap int      `json:"care_area_cap"`
	Policy      string   `json:"policy"`
}

// SiteSaved answers PUT RouteSite.
type SiteSaved struct {
	Site string `json:"site"`
}

// Device is a device as registered.
type Device struct {
	ID        string   `json:"id"`
	UDIDI     string   `json:"udi_di"`
	Product   string   `json:"product"`
	Hardware  string   `json:"hardware"`
	Site      string   `json:"site"`
	CareArea  string   `json:"care_area"`
	Tags      []string `json:"tags"`
	PublicKey string   `json:"public_key"` // base64 raw ed25519
	Installed string   `json:"installed_version"`
}

// DevicesRegistered answers a registration or an import.
type DevicesRegistered struct {
	Registered int `json:"registered"`
	// Unchanged counts imported rows that matched a registered device.
	Unchanged int `json:"unchanged,omitempty"`
}

// Decommissioned answers POST RouteDecommission.
type Decommissioned struct {
	Decommissioned string `json:"decommissioned"`
}

// RolloutPlan is a rollout plan as release engineers write it (flags or a
// YAML plan file with the same keys).
type RolloutPlan struct {
	Release string `json:"release" yaml:"release"` // PRODUCT@VERSION
	Select  string `json:"select" yaml:"select"`
	Waves   string `json:"waves" yaml:"waves"`
	Soak    string `json:"soak" yaml:"soak"`
	Success string `json:"success" yaml:"success"`
	HaltOn  string `json:"halt_on" yaml:"halt_on"`
}

// RolloutCreated answers POST RouteRollouts.
type RolloutCreated struct {
	ID     string `json:"id"`
	Target string `json:"target"`
	State  string `json:"state"`
}

// RolloutState answers pause, resume and abort.
type RolloutState struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// Wave is one step of a rollout: it covers the selection up to Share
// (cumulative, 0 < Share ≤ 1).
type Wave struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
}

// WaveCounts are the numbers status shows for one wave at one site.
type WaveCounts struct {
	Wave       string `json:"wave"`
	Site       string `json:"site"`
	Eligible   int    `json:"eligible"`
	Approved   bool   `json:"approved"`
	Assigned   int    `json:"assigned"`
	Installing int    `json:"installing"`
	Deferred   int    `json:"deferred"`
	Committed  int    `json:"committed"`
	RolledBack int    `json:"rolled_back"`
	Failed     int    `json:"failed"`
}

// RolloutStatus is a rollout with its counts per wave and site.
type RolloutStatus struct {
	ID          string       `json:"id"`
	Release     string       `json:"release"`
	Target      string       `json:"target"`
	State       string       `json:"state"`
	CurrentWave string       `json:"current_wave"`
	WaveOpened  time.Time    `json:"wave_opened"`
	HaltReason  string       `json:"halt_reason,omitempty"`
	Waves       []Wave       `json:"waves"`
	Counts      []WaveCounts `json:"counts"`
	// WaitingFor names the sites whose approval an open wave still needs:
	// they hold devices of that wave and have not approved it.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Served is what the repository served of the release, full images
	// against deltas (release-wide; not shown to site-scoped operators).
	Served *ServedBytes `json:"served,omitempty"`
}

// ServedBytes is a release's bytes served by every replica, full image
// against deltas, and the requests that carried them (a resumed download
// is a second request).
type ServedBytes struct {
	FullBytes     int64 `json:"full_bytes"`
	DeltaBytes    int64 `json:"delta_bytes"`
	FullRequests  int64 `json:"full_requests"`
	DeltaRequests int64 `json:"delta_requests"`
}

// Approval is hospital IT's decision for one wave at one site.
type Approval struct {
	Wave      string    `json:"wave"`
	Site      string    `json:"site"`
	Comment   string    `json:"comment"`
	NotBefore time.Time `json:"not_before"`
	Revoke    bool      `json:"revoke"`
}

// Deferral is a site's "not now" for a wave, until a time.
type Deferral struct {
	Wave   string    `json:"wave"`
	Site   string    `json:"site"`
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

// HaltRequest asks for the emergency halt of every rollout of a release.
type HaltRequest struct {
	Reason string `json:"reason"`
}

// Halted lists the rollouts a halt stopped.
type Halted struct {
	Halted []string `json:"halted"`
}

// DevicePage is one page of devices (GET RouteDevices), ordered by site
// then id; Total counts every device the query selects.
type DevicePage struct {
	Devices []DeviceRow `json:"devices"`
	Total   int         `json:"total"`
	Offset  int         `json:"offset"`
	Limit   int         `json:"limit"`
}

// DeviceRow is what a page of devices shows of one device.
type DeviceRow struct {
	ID             string    `json:"id"`
	Product        string    `json:"product"`
	Hardware       string    `json:"hardware"`
	Site           string    `json:"site"`
	CareArea       string    `json:"care_area"`
	Installed      string    `json:"installed_version"`
	Decommissioned bool      `json:"decommissioned,omitempty"`
	LastSeen       time.Time `json:"last_seen,omitzero"`
	// State is the agent's newest reported install state (idle when it
	// has reported none), with its reason and time.
	State       InstallState `json:"state"`
	StateReason string       `json:"state_reason,omitempty"`
	StateTime   time.Time    `json:"state_time,omitzero"`
	// InUse: the newest event is a deferral because the device is in
	// clinical use.
	InUse bool `json:"in_use"`
	// Pending is an assignment the device has not finished, if any.
	Pending *PendingAssignment `json:"pending,omitempty"`
}

// PendingAssignment is a rollout's unfinished assignment of a device.
type PendingAssignment struct {
	Rollout string       `json:"rollout"`
	Release string       `json:"release"`
	State   InstallState `json:"state"`
}

// RolloutList answers GET RouteRollouts: the newest rollouts first.
type RolloutList struct {
	Rollouts []RolloutStatus `json:"rollouts"`
}
