// Package vigilance is the server's post-market vigilance: it imports
// vulnerability feeds (OSV, NVD CVE API 2.0, CISA KEV) from files or on a
// schedule, indexes every published release's SBOM, keeps one finding per
// (vulnerability, component, release) up to date as either side changes,
// and answers the questions of the morning a CVE lands: which releases
// carry it, how many devices at which sites run them, which release fixes
// it, and how far the fix has rolled out. Findings carry a triage record
// and, for uncontrolled risks, the clocks of FDA's 2016 postmarket
// guidance (customer notice within 30 days of awareness, fix deployed
// within 60).
//
// Matching is incremental and indexed: records and components are stored
// with their lookup keys, (ecosystem, package) and (vendor, product), so a
// new release costs its own components and a changed feed record costs the
// components it names, never the whole feed times the whole catalog. The
// matching rules themselves are internal/vigilance's (shared with the
// offline scan), so the server and `vigil sbom scan` agree exactly.
//
// Threat model: feeds are untrusted input (bounded, parsed record by
// record; a malformed record is skipped and reported, never half-written).
// SBOMs are signed targets but still parsed as untrusted. Triage is an
// operator action: every change is audited. Site-scoped operators see the
// device counts of their own sites only.
//
// Concurrency: the service holds no state of its own but a short-lived KEV
// cache; everything is in the state store, so any number of replicas may
// serve it. The clock job and scheduled feeds run on one replica at a time
// (leases, in the app package).
package vigilance

import (
	"context"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Clocks and limits, with their units.
const (
	// NoticeWindow and FixWindow are the 2016 postmarket guidance's clocks
	// for an uncontrolled risk, from the finding's awareness date.
	NoticeWindow = 30 * 24 * time.Hour
	FixWindow    = 60 * 24 * time.Hour
	// FixDeployedShare is the share of exposed devices that must run a
	// fixing release before the fix counts as deployed.
	FixDeployedShare = 0.95
	// RecordBatch is how many changed records one transaction writes.
	RecordBatch = 500
	// kevCacheTTL bounds how stale another replica's KEV import may look.
	kevCacheTTL = time.Minute
	// MaxRationaleLength bounds triage texts, in bytes.
	MaxRationaleLength = 4000
	// MaxListedFindings bounds one findings listing.
	MaxListedFindings = 10000
	// MaxConcurrentImports bounds feed imports running at once on one
	// replica (each may spool up to MaxFeedDownloadBytes to disk); more
	// wait their turn.
	MaxConcurrentImports = 1
)

// Stores are the state areas vigilance uses.
type Stores struct {
	Vulns    state.VulnStore
	SBOMs    state.SBOMStore
	Findings state.FindingStore
	Registry state.RegistryStore
	Audit    audit.Recorder
}

// Catalog is the published releases (tufrepo.Repo).
type Catalog interface {
	Releases(ctx context.Context) ([]release.Published, error)
	OpenTarget(ctx context.Context, p release.Published) (io.ReadCloser, error)
}

// Rollouts reports the rollouts of a release (fleet.Rollouts).
type Rollouts interface {
	ProgressOf(ctx context.Context, product, version string) ([]api.RolloutProgress, error)
}

// Alerter is told about each new finding on a release devices run.
type Alerter interface {
	Alert(ctx context.Context, a Alert)
}

// Alert is a new finding on a release that devices run.
type Alert struct {
	Event   string            `json:"event"` // "finding.new"
	Finding api.FindingDetail `json:"finding"`
	Sites   []api.SiteCount   `json:"sites"`
	Devices int               `json:"devices"`
	At      time.Time         `json:"at"`
}

// Options configure the service.
type Options struct {
	Log    *zap.Logger
	Now    func() time.Time
	Alerts Alerter // nil: none
	// Rollouts gives fixing releases' progress (nil: not shown).
	Rollouts Rollouts
	// Metrics counts alerts (nil: not counted).
	Metrics *Metrics
	// TempDir holds uploaded and downloaded feeds until imported
	// (default: the system's).
	TempDir string
	// Feeds are the scheduled feeds (their status is reported).
	Feeds []FeedConfig
	// Flush writes this replica's buffered check-ins before device counts
	// are read (fleet.CheckIns.FlushLastSeen), so a single server reports
	// what its devices said a moment ago; other replicas' buffers are at
	// most fleet.LastSeenFlushInterval behind. Nil: nothing to flush.
	Flush func(ctx context.Context) error
}

// Service is the server's vigilance.
type Service struct {
	st  Stores
	cat Catalog
	o   Options

	importing chan struct{} // a slot per running import

	mu       sync.Mutex
	kev      map[string][]byte
	kevVer   string
	kevUntil time.Time
}

// New returns the service.
func New(st Stores, cat Catalog, o Options) *Service {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{st: st, cat: cat, o: o, importing: make(chan struct{}, MaxConcurrentImports)}
}

func (s *Service) now() time.Time { return s.o.Now().UTC() }
