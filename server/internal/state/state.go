// Package state defines what the server keeps in its database, as one small
// interface per area, each seen only by the code that owns that area:
//
//	RepoStore      the TUF repository's role versions and the publish lock (tufrepo)
//	RegistryStore  sites and devices, the fleet epoch (fleet's registry and caches)
//	NonceStore     device request nonces (fleet's device authentication)
//	RolloutStore   rollouts, approvals, deferrals (fleet's rollouts)
//	ProgressStore  each device's state in each rollout (check-ins, events, rollouts)
//	EventStore     device events (fleet's event ingest)
//	AuditStore     the hash-chained audit log (everything that records)
//	TokenStore     operator tokens (operator)
//	SessionStore   console sessions (operator)
//	LeaseStore     leases for singleton jobs (app)
//	SecretStore    secrets every replica shares (fleet's device sessions)
//	ServedStore    bytes of release files served, by release and kind (served)
//	VulnStore      vulnerability records, the KEV catalog, feed state (vigilance)
//	SBOMStore      releases' indexed SBOMs (vigilance)
//	FindingStore   findings, their triage and clocks (vigilance)
//	CaseStore      coordinated-disclosure cases (cvd)
//	IncidentStore  incidents (incident)
//	NoticeStore    customer notices, deliveries, site contacts (notice)
//	ReleaseHistory when releases were published and revoked (reports)
//	CommitLog      when devices committed releases (reports)
//
// Store is all of them; only the app package (wiring) and the conformance
// suite (statetest) see it whole. Two backends implement it (sqlstore:
// SQLite, the embedded default, and PostgreSQL, for many replicas), and
// both pass statetest.
//
// Concurrency: servers are stateless and may run as many replicas on one
// database. Anything that must happen in order across replicas goes through
// the database: Publish holds a database-wide lock for one transaction,
// AppendAudit chains entries under a lock, UpdateRollout refuses a stale
// revision, SetProgress inserts an assignment only once, and a lease gives
// a periodic job to one replica at a time. Nothing is coordinated through
// process memory.
package state

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
)

// ErrNotFound is returned (possibly wrapped) when a record does not exist.
var ErrNotFound = apperr.New(apperr.NotFound, "record not found")

// RoleVersion is the current published version of one TUF role's metadata.
type RoleVersion struct {
	// Role is the role name: root, targets, snapshot, timestamp, or a
	// product role such as demo-pump.
	Role string
	// Version is the metadata's signed version number (≥ 1).
	Version int64
	// SHA256 is the hex digest of the metadata file as written; Length its size.
	SHA256 string
	Length int64
	// Expires is the metadata's signed expiry.
	Expires time.Time
	// UpdatedAt is when this version was recorded (set by the store).
	UpdatedAt time.Time
}

// Validate checks the fields a caller supplies.
func (v RoleVersion) Validate() error {
	switch {
	case v.Role == "":
		return apperr.New(apperr.Invalid, "role name is empty")
	case len(v.Role) > MaxRoleNameLength:
		return apperr.New(apperr.Invalid, "role name %q is longer than %d bytes", v.Role, MaxRoleNameLength)
	case v.Version < 1:
		return apperr.New(apperr.Invalid, "role %s: version %d is below 1", v.Role, v.Version)
	case len(v.SHA256) != 64:
		return apperr.New(apperr.Invalid, "role %s: sha256 %q is not 64 hex digits", v.Role, v.SHA256)
	case v.Length <= 0:
		return apperr.New(apperr.Invalid, "role %s: length %d is not positive", v.Role, v.Length)
	}
	return nil
}

// MaxRoleNameLength is the longest role name the store accepts, in bytes.
const MaxRoleNameLength = 128

// Store is the whole of the server's state: every area, and the database
// itself. Only the app package and statetest use it; everything else takes
// the area interfaces it needs.
type Store interface {
	RepoStore
	RegistryStore
	NonceStore
	RolloutStore
	ProgressStore
	EventStore
	AuditStore
	TokenStore
	SessionStore
	LeaseStore
	SecretStore
	ServedStore
	VulnStore
	SBOMStore
	FindingStore
	CaseStore
	IncidentStore
	NoticeStore
	ReleaseHistory
	CommitLog

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
	// Backend names the backend ("sqlite" or "postgres").
	Backend() string
}

// RepoStore keeps the TUF repository's published role versions.
type RepoStore interface {
	// RoleVersion returns a role's current version, or ErrNotFound.
	RoleVersion(ctx context.Context, role string) (RoleVersion, error)
	// RoleVersions lists every role's current version, ordered by role.
	RoleVersions(ctx context.Context) ([]RoleVersion, error)
	// Publish runs fn while holding the repository's publish lock, inside
	// one transaction: publishes from any number of goroutines, processes
	// and replicas run one at a time, and each sees what the previous one
	// committed. If fn returns an error, or ctx ends, nothing fn wrote is
	// kept and the error is returned.
	Publish(ctx context.Context, fn func(ctx context.Context, tx PublishTx) error) error
}

// ProgressMove is the state a batch of events moves a device to in one
// rollout.
type ProgressMove struct {
	RolloutID, DeviceID string
	State               api.InstallState
	Updated             time.Time
}

// EventStore keeps the install events devices report.
type EventStore interface {
	// AddDeviceEvents stores device events; an event whose id is already
	// stored is skipped. It returns how many were new.
	AddDeviceEvents(ctx context.Context, evs []DeviceEvent) (int, error)
	// IngestDeviceEvents stores a device's events (each id once) and, in
	// the same transaction, applies each move to the device's progress in
	// its rollout: the row takes the move's state unless it is missing or
	// final already. It returns how many events were new and, per move,
	// whether the row changed.
	IngestDeviceEvents(ctx context.Context, evs []DeviceEvent, moves []ProgressMove) (int, []bool, error)
	// DeviceEvents lists a device's events, oldest first, at most limit.
	DeviceEvents(ctx context.Context, deviceID string, limit int) ([]DeviceEvent, error)
	// LatestEvents returns the newest event of each of the devices that
	// have one.
	LatestEvents(ctx context.Context, deviceIDs []string) (map[string]DeviceEvent, error)
}

// AuditStore keeps the hash-chained audit log.
type AuditStore interface {
	// AppendAudit appends e to the hash chain: it assigns the next sequence
	// number, links the previous entry's hash and computes e's, all under
	// a database-wide lock so replicas never fork the chain.
	AppendAudit(ctx context.Context, e audit.Entry) (audit.Entry, error)
	// AuditEntries lists entries with seq > afterSeq and time ≥ since, in
	// order, at most limit.
	AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
}

// LeaseStore gives periodic jobs to one replica at a time.
type LeaseStore interface {
	// TryLease takes or renews the lease name for holder until now+ttl. It
	// succeeds when nobody holds the lease, when it expired, or when holder
	// holds it already; otherwise it reports false (not an error).
	TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder holds it.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// SecretStore keeps secrets every replica must share.
type SecretStore interface {
	// SharedSecret returns the secret stored under name, storing candidate
	// first if there is none: replicas racing to make one all get the same.
	SharedSecret(ctx context.Context, name string, candidate []byte, now time.Time) ([]byte, error)
}

// Served is bytes of one release's files of one kind served, added up.
type Served struct {
	Product, Version, Kind string
	Bytes, Requests        int64
}

// ServedStore adds up the bytes of release files served.
type ServedStore interface {
	// AddServed adds each entry to its (product, version, kind) totals.
	AddServed(ctx context.Context, add []Served) error
	// ServedOf returns a release's totals, by kind.
	ServedOf(ctx context.Context, product, version string) (map[string]Served, error)
}

// DeviceEvent is one install state change reported by a device.
type DeviceEvent struct {
	ID       string
	DeviceID string
	Target   string
	Version  string
	State    api.InstallState
	Reason   string
	Time     time.Time
	Received time.Time // set by the store
}

// PublishTx is the view of the store inside Publish.
type PublishTx interface {
	// RoleVersion returns a role's current version, or ErrNotFound.
	RoleVersion(ctx context.Context, role string) (RoleVersion, error)
	// RoleVersions lists every role's current version, ordered by role.
	RoleVersions(ctx context.Context) ([]RoleVersion, error)
	// SetRoleVersion records v as the role's current version. The version
	// must be strictly greater than the recorded one; otherwise the error
	// is of kind Conflict and nothing changes.
	SetRoleVersion(ctx context.Context, v RoleVersion) error
	// NoteRelease records a release entering (Published set) or leaving
	// (Revoked set) a product role, with the publish that did it.
	NoteRelease(ctx context.Context, n ReleaseNote) error
	// Release returns a release's history, or ErrNotFound.
	Release(ctx context.Context, product, version string) (ReleaseNote, error)
}

// VersionConflict is the error SetRoleVersion returns for a version that does
// not move forward.
func VersionConflict(role string, have, want int64) error {
	return apperr.New(apperr.Conflict, "role %s is at version %d; version %d does not move it forward", role, have, want).WithCode(api.CodeVersionConflict)
}

// NotFound wraps ErrNotFound with what was looked for.
func NotFound(what string) error { return fmt.Errorf("%w: %s", ErrNotFound, what) }
