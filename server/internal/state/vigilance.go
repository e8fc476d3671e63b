package state

import (
	"context"
	"time"
)

// VulnRecord is a stored vulnerability record: its normalized JSON
// (vigilance.Record), the hash of the feed bytes it came from (an
// unchanged record is not rewritten), and what it is indexed by.
type VulnRecord struct {
	Source    string
	ID        string
	Hash      string
	Withdrawn bool
	Data      []byte
	Keys      []IndexKey
	Aliases   []string
	Imported  time.Time
}

// IndexKey is one lookup key of a record or a component: kind "pkg"
// (ecosystem, package) or "cpe" (vendor, product).
type IndexKey struct {
	Kind, K1, K2 string
}

// SBOMRecord is a release's indexed SBOM.
type SBOMRecord struct {
	Product, Version string
	Target, SHA256   string
	SpecVersion      string
	Components       []SBOMComponent
	Indexed          time.Time
}

// SBOMComponent is one component of an indexed SBOM.
type SBOMComponent struct {
	Product, Version          string // the release
	BOMRef, Name, CompVersion string
	PURL, CPE                 string
	Keys                      []IndexKey
}

// FindingRecord is a stored finding: the finding as shown (JSON) and the
// fields lists, triage and clocks filter and sort by.
type FindingRecord struct {
	ID               string
	VulnSource       string
	VulnID           string
	Product, Version string
	Data             []byte // vigilance.Finding
	KEV              bool
	Status           string // open, closed
	ClosedReason     string
	Risk             string // untriaged, controlled, uncontrolled
	VEXStatus        string
	Justification    string
	Rationale        string
	Action           string // VEX action statement (affected)
	TriagedBy        string
	Triaged          time.Time
	Aware            time.Time
	AwareReason      string
	Created          time.Time
	Updated          time.Time
	Closed           time.Time
	Notified         time.Time
	FixDeployed      time.Time
	ExposurePeak     int64
}

// FindingFilter selects findings; empty fields select all.
type FindingFilter struct {
	Product, Version, VulnID, Status string
	KEVOnly                          bool
	// Risk selects a triage risk; Uncontrolled findings with open clocks
	// are what the clock job and the overdue listing read.
	Risk  string
	Limit int
	// NoData leaves FindingRecord.Data empty (counts, clocks).
	NoData bool
}

// FeedState is a scheduled feed's last fetch.
type FeedState struct {
	Name         string
	ETag         string
	LastModified string
	Fetched      time.Time
	Succeeded    time.Time
	Message      string
}

// VulnStore keeps vulnerability records, the KEV catalog and feed state.
type VulnStore interface {
	// RecordHashes returns the stored hashes of the given records of a
	// source, by id (ids not stored are absent).
	RecordHashes(ctx context.Context, source string, ids []string) (map[string]string, error)
	// CountRecords counts a source's stored records.
	CountRecords(ctx context.Context, source string) (int, error)
	// PutRecords stores records (replacing those with the same source and
	// id, with their keys and aliases) in one transaction.
	PutRecords(ctx context.Context, rs []VulnRecord) error
	// RecordsByKeys returns the records indexed by any of keys.
	RecordsByKeys(ctx context.Context, keys []IndexKey) ([]VulnRecord, error)
	// RecordsByAlias returns the records whose id or an alias is id.
	RecordsByAlias(ctx context.Context, id string) ([]VulnRecord, error)
	// PutKEV replaces the KEV catalog (entries as JSON by CVE id).
	PutKEV(ctx context.Context, version string, entries map[string][]byte) error
	// KEV returns the KEV catalog: version and entries by CVE id.
	KEV(ctx context.Context) (string, map[string][]byte, error)
	PutFeedState(ctx context.Context, s FeedState) error
	FeedStates(ctx context.Context) ([]FeedState, error)
}

// SBOMStore keeps releases' indexed SBOMs.
type SBOMStore interface {
	// PutSBOM stores (or replaces) a release's SBOM and its components.
	PutSBOM(ctx context.Context, s SBOMRecord) error
	// SBOM returns a release's SBOM with its components, or NotFound.
	SBOM(ctx context.Context, product, version string) (SBOMRecord, error)
	// SBOMs lists a product's SBOMs without components ("" = all).
	SBOMs(ctx context.Context, product string) ([]SBOMRecord, error)
	// ComponentsByKeys returns the components (of every release) indexed
	// by any of keys.
	ComponentsByKeys(ctx context.Context, keys []IndexKey) ([]SBOMComponent, error)
}

// FindingStore keeps findings, their triage and clocks.
type FindingStore interface {
	// PutFinding inserts a finding, or updates the finding data (Data,
	// KEV, Status, ClosedReason, Closed, Updated) of an existing one,
	// keeping its triage and clocks. It reports whether it was new.
	PutFinding(ctx context.Context, f FindingRecord) (bool, error)
	// PutFindings is PutFinding for many, in one transaction; it reports
	// which were new.
	PutFindings(ctx context.Context, fs []FindingRecord) ([]bool, error)
	// UpdateTriage stores triage and clock fields of an existing finding.
	UpdateTriage(ctx context.Context, f FindingRecord) error
	Finding(ctx context.Context, id string) (FindingRecord, error)
	Findings(ctx context.Context, f FindingFilter) ([]FindingRecord, error)
}
