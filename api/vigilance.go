package api

import (
	"time"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// Post-market vigilance routes (device makers' security officers, release
// engineers; hospital IT reads its own sites' exposure).
const (
	RouteFeedImport  = APIPrefix + "/vigilance/feeds/:kind"             // POST feed bytes (JSON or zip) → ImportReport
	RouteFeeds       = APIPrefix + "/vigilance/feeds"                   // GET → FeedStatus
	RouteFindings    = APIPrefix + "/vigilance/findings"                // GET ?product=&release=&site=&kev=&status=&limit= → FindingList
	RouteFinding     = APIPrefix + "/vigilance/findings/:id"            // GET → FindingDetail
	RouteTriage      = APIPrefix + "/vigilance/findings/:id/triage"     // POST Triage → FindingDetail
	RouteOverdue     = APIPrefix + "/vigilance/overdue"                 // GET → FindingList (overdue clocks only)
	RouteExposure    = APIPrefix + "/vigilance/exposure/:vuln"          // GET → Exposure
	RouteReleaseSBOM = APIPrefix + "/vigilance/sboms/:product/:version" // GET → SBOM
	RouteVEX         = APIPrefix + "/vigilance/vex/:product/:version"   // GET ?format=cyclonedx|openvex → the document
)

// Feed kinds (the :kind of RouteFeedImport).
const (
	FeedOSV = "osv"
	FeedNVD = "nvd"
	FeedKEV = "kev"
)

// VEX statuses a triage may record (OpenVEX's; the CycloneDX export maps
// them to analysis states).
const (
	VEXNotAffected        = "not_affected"
	VEXAffected           = "affected"
	VEXFixed              = "fixed"
	VEXUnderInvestigation = "under_investigation"
)

// VEX formats of RouteVEX.
const (
	VEXFormatCycloneDX = "cyclonedx"
	VEXFormatOpenVEX   = "openvex"
)

// Finding is the finding shape every tool prints: the offline scan, the
// server and the CLI (defined once, in internal/vigilance).
type Finding = vigilance.Finding

// ImportReport answers a feed import.
type ImportReport struct {
	Kind string `json:"kind"`
	// Files read and records parsed from them.
	Files   int `json:"files"`
	Records int `json:"records"`
	// New and Changed records were written; Unchanged ones (same bytes as
	// the stored record) were not.
	New       int `json:"new"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	// Withdrawn counts records that are withdrawn (OSV) or rejected (NVD).
	Withdrawn int `json:"withdrawn"`
	// Skipped lists malformed records, by file and id; none was written.
	Skipped []Skipped `json:"skipped"`
	// KEVVersion is the imported KEV catalog's catalogVersion.
	KEVVersion string `json:"kev_version,omitempty"`
	// FindingsOpened and FindingsClosed are what the import changed.
	FindingsOpened int   `json:"findings_opened"`
	FindingsClosed int   `json:"findings_closed"`
	Millis         int64 `json:"millis"`
}

// Skipped is one malformed record a feed import left out.
type Skipped struct {
	File  string `json:"file"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error"`
}

// FeedStatus answers GET RouteFeeds.
type FeedStatus struct {
	// Records counts stored records by source (osv, nvd).
	Records    map[string]int `json:"records"`
	KEVVersion string         `json:"kev_version"`
	KEVEntries int            `json:"kev_entries"`
	Scheduled  []FeedSchedule `json:"scheduled"`
}

// FeedSchedule is one scheduled feed and its last fetch.
type FeedSchedule struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	URL       string    `json:"url"`
	Interval  string    `json:"interval"`
	Fetched   time.Time `json:"fetched,omitzero"`
	Succeeded time.Time `json:"succeeded,omitzero"`
	Message   string    `json:"message,omitempty"`
}

// FindingList answers the findings listings.
type FindingList struct {
	Findings []FindingDetail `json:"findings"`
	// ReleasesWithoutSBOM are published releases (of the listed products)
	// with no SBOM: their findings are unknown, not absent.
	ReleasesWithoutSBOM []string `json:"releases_without_sbom"`
}

// FindingDetail is a finding with what the server knows around it.
type FindingDetail struct {
	vigilance.Finding
	ClosedReason string    `json:"closed_reason,omitempty"`
	Triage       Triaged   `json:"triage"`
	Aware        time.Time `json:"aware"`
	AwareReason  string    `json:"aware_reason,omitempty"`
	Created      time.Time `json:"created"`
	// Clocks run for uncontrolled risks only.
	Clocks *Clocks `json:"clocks,omitempty"`
	// Devices running the finding's release now, by site (a site-scoped
	// token sees its own sites only).
	Devices      []SiteCount `json:"devices"`
	DevicesTotal int         `json:"devices_total"`
	// AffectedReleases are the product's releases with an open finding of
	// the same vulnerability.
	AffectedReleases []string `json:"affected_releases"`
	// FixingRelease is the lowest newer release of the product whose SBOM
	// no longer matches the vulnerability (nil: none yet).
	FixingRelease *FixingRelease `json:"fixing_release"`
}

// Triaged is a finding's triage record.
type Triaged struct {
	Risk          string    `json:"risk"`
	Rationale     string    `json:"rationale,omitempty"`
	VEXStatus     string    `json:"vex_status,omitempty"`
	Justification string    `json:"justification,omitempty"`
	Action        string    `json:"action,omitempty"`
	By            string    `json:"by,omitempty"`
	At            time.Time `json:"at,omitzero"`
}

// Clocks are the 2016 postmarket guidance's clocks of an uncontrolled risk:
// customer notice within 30 days of awareness, fix deployed within 60.
type Clocks struct {
	NoticeDue   time.Time `json:"notice_due"`
	Notified    time.Time `json:"notified,omitzero"`
	FixDue      time.Time `json:"fix_due"`
	FixDeployed time.Time `json:"fix_deployed,omitzero"`
	// Overdue names the clocks past due and not met: "notice", "fix".
	Overdue []string `json:"overdue"`
	// Remediated and Exposed count the product's devices on a fixing
	// release and on an affected one, now.
	Remediated int `json:"remediated"`
	Exposed    int `json:"exposed"`
}

// SiteCount is a number of devices at a site.
type SiteCount struct {
	Site  string `json:"site"`
	Count int    `json:"count"`
}

// FixingRelease is a release that fixes a finding, with its rollouts.
type FixingRelease struct {
	Release  string            `json:"release"`
	Rollouts []RolloutProgress `json:"rollouts"`
	// Committed counts the product's devices running it (or a later
	// release without the vulnerability).
	Committed int `json:"committed"`
}

// RolloutProgress is one rollout of a fixing release, in brief.
type RolloutProgress struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Eligible  int    `json:"eligible"`
	Committed int    `json:"committed"`
}

// Triage is a finding's triage decision. Risk and Rationale are required;
// the VEX status is optional (not_affected needs a justification, affected
// an action statement). Aware corrects the awareness date (with
// AwareReason); Notified records that customers were told (it stops the
// notice clock).
type Triage struct {
	Risk          string    `json:"risk"`
	Rationale     string    `json:"rationale"`
	VEXStatus     string    `json:"vex_status,omitempty"`
	Justification string    `json:"justification,omitempty"`
	Action        string    `json:"action,omitempty"`
	Aware         time.Time `json:"aware,omitzero"`
	AwareReason   string    `json:"aware_reason,omitempty"`
	Notified      time.Time `json:"notified,omitzero"`
}

// Exposure answers GET RouteExposure: where a vulnerability runs.
type Exposure struct {
	Vulnerability string `json:"vulnerability"`
	// IDs are the identifiers that name it (the id, CVE and aliases).
	IDs  []string      `json:"ids"`
	KEV  bool          `json:"kev"`
	Rows []ExposureRow `json:"rows"`
	// Total is the sum of Rows' counts.
	Total int `json:"total"`
	// Fixing lists each affected product's fixing release ("" = none).
	Fixing map[string]string `json:"fixing"`
	// ReleasesWithoutSBOM are the affected products' releases without an
	// SBOM, which devices run: their exposure is unknown.
	ReleasesWithoutSBOM []string `json:"releases_without_sbom"`
}

// ExposureRow is the devices of one site on one affected release.
type ExposureRow struct {
	Site    string `json:"site"`
	Release string `json:"release"`
	Devices int    `json:"devices"`
}

// SBOM is a release's indexed SBOM.
type SBOM struct {
	Release     string                `json:"release"`
	Target      string                `json:"target"`
	SHA256      string                `json:"sha256"`
	SpecVersion string                `json:"spec_version"`
	Components  []vigilance.Component `json:"components"`
}

// AcceptedVulnerability is a release engineer's recorded decision to
// publish a release that still carries a KEV-listed vulnerability.
type AcceptedVulnerability struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}
