package state

import (
	"context"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// Site is a hospital site as stored.
type Site struct {
	Name        string
	TimeZone    string
	Windows     []string // "Sun 02:00-05:00 America/Chicago"
	CareAreas   []string
	SiteCap     int
	CareAreaCap int
	AutoApprove []string
	Created     time.Time
}

// Device is a registered device.
type Device struct {
	ID             string
	UDIDI          string
	Product        string
	Hardware       string
	Site           string
	CareArea       string
	Tags           []string
	PublicKey      string // base64 of the raw ed25519 key
	Installed      string // as last reported
	Decommissioned bool
	LastSeen       time.Time
	Created        time.Time
	// LastCheckIn is the device's own signed time of its newest recorded
	// check-in (zero before the first).
	LastCheckIn time.Time
}

// DeviceQuery selects devices for a page; empty fields select all. Sites
// nil means every site (an empty, non-nil list selects none).
type DeviceQuery struct {
	Sites    []string
	CareArea string
	Product  string
	Version  string
	// Prefix matches the start of the device id.
	Prefix string
	Offset int
	Limit  int
	// InService leaves decommissioned devices out.
	InService bool
}

// InstalledCount is how many devices of a product at a site run a version.
type InstalledCount struct {
	Site, Version string
	Count         int
}

// Touch is one check-in's effect on the registry.
type Touch struct {
	DeviceID  string
	Installed string
	Seen      time.Time
	// SignedAt is the time the device signed into the check-in; a Touch
	// not newer than the recorded LastCheckIn is ignored (replays).
	SignedAt time.Time
}

// Rollout is a stored rollout; Plan is its JSON plan.
type Rollout struct {
	ID          string
	Product     string
	Version     string
	Target      string
	Plan        []byte
	State       string
	CurrentWave int
	WaveOpened  time.Time
	HaltReason  string
	Created     time.Time
	// Revision increases with every update; UpdateRollout refuses a stale one.
	Revision int64
}

// Approval is a site's approval of one wave.
type Approval struct {
	RolloutID string
	Wave      int
	Site      string
	By        string
	Comment   string
	NotBefore time.Time
	At        time.Time
	Revoked   bool
}

// Deferral is a site's postponement of one wave.
type Deferral struct {
	RolloutID string
	Wave      int
	Site      string
	Reason    string
	Until     time.Time
}

// Progress is one device's state in one rollout.
type Progress struct {
	RolloutID string
	DeviceID  string
	Wave      int
	State     api.InstallState
	Updated   time.Time
}

// Claim names where an assignment counts and the caps it must stay under
// (0: no cap).
type Claim struct {
	Site, CareArea   string
	SiteCap, AreaCap int
}

// ClaimResult is what ClaimAssignment did.
type ClaimResult int

// ClaimAssignment's outcomes.
const (
	Claimed         ClaimResult = iota // the row was inserted
	AlreadyAssigned                    // the device has a row already (another replica was first)
	SiteFull                           // the site has SiteCap unfinished assignments
	CareAreaFull                       // the care area has AreaCap unfinished assignments
)

// RegistryStore keeps sites and devices.
type RegistryStore interface {
	// PutSite creates or replaces a site.
	PutSite(ctx context.Context, s Site) error
	Sites(ctx context.Context) ([]Site, error)
	// AddDevices registers devices, all or none; an existing id is a Conflict.
	AddDevices(ctx context.Context, ds []Device) error
	Device(ctx context.Context, id string) (Device, error)
	DevicesOf(ctx context.Context, product string) ([]Device, error)
	// Decommission marks a device retired; its key stops working.
	Decommission(ctx context.Context, id string) error
	// TouchDevices records check-ins' installed versions and times; a
	// touch signed no later than the device's LastCheckIn changes nothing.
	TouchDevices(ctx context.Context, ts []Touch) error
	// FleetEpoch changes whenever sites, devices, rollouts, approvals or
	// deferrals change: replicas reload cached state when it moves.
	FleetEpoch(ctx context.Context) (int64, error)
	// DevicePage returns one page of the devices q selects, ordered by
	// site then id, and how many it selects in all.
	DevicePage(ctx context.Context, q DeviceQuery) ([]Device, int, error)
	// InstalledCounts counts a product's devices in service (not
	// decommissioned) by site and installed version, as last reported.
	InstalledCounts(ctx context.Context, product string) ([]InstalledCount, error)
}

// NonceStore keeps device request nonces for replay protection.
type NonceStore interface {
	// UseNonce records a device request nonce; a nonce seen before (and
	// not expired) is a Conflict: a replay.
	UseNonce(ctx context.Context, deviceID, nonce string, now, expires time.Time) error
}

// RolloutStore keeps rollouts and hospitals' decisions about them.
type RolloutStore interface {
	CreateRollout(ctx context.Context, r Rollout) error
	Rollout(ctx context.Context, id string) (Rollout, error)
	// Rollouts lists rollouts, newest first; product "" means all.
	Rollouts(ctx context.Context, product string) ([]Rollout, error)
	// UpdateRollout stores r if its Revision is still current, and bumps it.
	UpdateRollout(ctx context.Context, r Rollout) (Rollout, error)
	PutApproval(ctx context.Context, a Approval) error
	Approvals(ctx context.Context, rolloutID string) ([]Approval, error)
	PutDeferral(ctx context.Context, d Deferral) error
	Deferrals(ctx context.Context, rolloutID string) ([]Deferral, error)
}

// ProgressStore keeps each device's state in each rollout.
type ProgressStore interface {
	// SetProgress records a device's state in a rollout. With onlyIfNew it
	// inserts only when the device has no row yet and reports whether it did.
	SetProgress(ctx context.Context, p Progress, onlyIfNew bool) (bool, error)
	// ClaimAssignment inserts a device's first progress row in a rollout
	// if it has none and its site and care area are under their caps: the
	// count of unfinished assignments and the insert happen in one
	// transaction serialized per (rollout, site) across every replica, so
	// a cap holds exactly however many replicas hand out assignments.
	ClaimAssignment(ctx context.Context, p Progress, c Claim) (ClaimResult, error)
	Progress(ctx context.Context, rolloutID string) ([]Progress, error)
	// ProgressChanged returns a rollout's rows changed at or after sinceMS
	// by the database's clock, and that clock's reading taken before the
	// rows were read (the next call's sinceMS, less a margin for
	// transactions still committing).
	ProgressChanged(ctx context.Context, rolloutID string, sinceMS int64) ([]Progress, int64, error)
	// DeviceProgress returns one device's progress in a rollout, or NotFound.
	DeviceProgress(ctx context.Context, rolloutID, deviceID string) (Progress, error)
}

// Token is an operator API token (the secret itself is never stored).
type Token struct {
	ID         string
	SecretHash string
	Name       string
	Role       string
	Sites      []string
	Expires    time.Time
	Revoked    bool
	Created    time.Time
}

// TokenStore keeps operator tokens.
type TokenStore interface {
	CreateToken(ctx context.Context, t Token) error
	Token(ctx context.Context, id string) (Token, error)
	Tokens(ctx context.Context) ([]Token, error)
	RevokeToken(ctx context.Context, id string) error
}

// Session is a console session: the hash of its secret id, the token it
// was exchanged for, its CSRF token, and when it was created and last used.
type Session struct {
	IDHash  string
	TokenID string
	CSRF    string
	Created time.Time
	Seen    time.Time
}

// SessionStore keeps console sessions.
type SessionStore interface {
	CreateSession(ctx context.Context, s Session) error
	// Session returns a session by its id hash, or NotFound.
	Session(ctx context.Context, idHash string) (Session, error)
	// TouchSession records a session's use.
	TouchSession(ctx context.Context, idHash string, seen time.Time) error
	// DeleteSession ends a session (no error when it is gone already).
	DeleteSession(ctx context.Context, idHash string) error
	// DeleteSessionsBefore ends the sessions created before created or
	// last used before seen; it returns how many.
	DeleteSessionsBefore(ctx context.Context, created, seen time.Time) (int, error)
}
