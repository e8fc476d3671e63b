// Package vigilance is the pure core of post-market vigilance, shared by
// vigil-server (which keeps findings) and the vigil CLI (`vigil sbom scan`,
// offline): what an SBOM component is, what a vulnerability record says
// once normalized from OSV or NVD, and the matching rules between them
// (../shared/testdata/vigilance/README.md has the exact rules and the
// expected results). Parsers of the formats live in sub-packages (osv, nvd,
// kev, sbom); nothing here does I/O.
//
// Matching:
//   - OSV: a pkg:golang purl against affected[] entries of ecosystem Go and
//     the module name (case-insensitively); SEMVER ranges with introduced
//     inclusive ("0" = from the beginning), fixed exclusive, last_affected
//     inclusive; pseudo-versions compare as semver, +incompatible ignored;
//     explicit versions[] too. stdlib and toolchain are never SBOM modules.
//   - NVD: a component's CPE 2.3 against every cpeMatch with vulnerable
//     true: same part, vendor and product; a "*" criteria version is checked
//     against the versionStart/End Including/Excluding bounds, any other
//     must be equal; the other criteria fields must be "*" or equal.
//     Versions compare by numeric and alphabetic runs (CompareNVD).
//   - KEV: by CVE id, through a record's id or aliases; a KEV id reached
//     only through related[] is reported as such (KEVRelated), not as KEV.
//
// Withdrawn OSV records and Rejected NVD records match nothing.
//
// Threat model: feeds and SBOMs are untrusted input. The parsers bound what
// they read (sizes, counts, version lengths) and a malformed record is
// refused alone, never half-used.
package vigilance

import (
	"sort"
	"strings"
	"time"
)

// Sources of records.
const (
	SourceOSV = "osv"
	SourceNVD = "nvd"
)

// Limits, with their units.
const (
	// MaxAffected bounds a record's affected packages; MaxEvents each
	// range's events; MaxCriteria an NVD record's cpeMatch entries;
	// MaxIDs its aliases and related ids.
	MaxAffected = 1000
	MaxEvents   = 1000
	MaxCriteria = 20000
	MaxIDs      = 1000
	// MaxIDLength bounds an id, in bytes.
	MaxIDLength = 128
)

// Component is one component of a release's SBOM.
type Component struct {
	BOMRef  string `json:"bom_ref"`
	Name    string `json:"name"`
	Version string `json:"version"`
	PURL    string `json:"purl,omitempty"`
	CPE     string `json:"cpe,omitempty"`
}

// Record is a vulnerability record, normalized from its feed.
type Record struct {
	Source    string    `json:"source"`
	ID        string    `json:"id"`
	Aliases   []string  `json:"aliases,omitempty"`
	Related   []string  `json:"related,omitempty"`
	Summary   string    `json:"summary,omitempty"`
	Published time.Time `json:"published,omitzero"`
	Modified  time.Time `json:"modified,omitzero"`
	// Withdrawn is set for an OSV record with "withdrawn" and an NVD
	// record with vulnStatus Rejected: it matches nothing, and closes what
	// it opened.
	Withdrawn bool `json:"withdrawn,omitempty"`
	// Affected lists OSV affected packages.
	Affected []Affected `json:"affected,omitempty"`
	// Criteria lists NVD cpeMatch entries with vulnerable true.
	Criteria []Criterion `json:"criteria,omitempty"`
	// CVSS lists NVD base scores (v4.0, v3.1, v3.0; primary first).
	CVSS []CVSS `json:"cvss,omitempty"`
	// CISAExploitAdd is NVD's copy of a KEV listing (date, YYYY-MM-DD).
	CISAExploitAdd string `json:"cisa_exploit_add,omitempty"`
}

// Affected is one OSV affected package.
type Affected struct {
	Ecosystem string   `json:"ecosystem"`
	Package   string   `json:"package"`
	Ranges    []Range  `json:"ranges,omitempty"`
	Versions  []string `json:"versions,omitempty"`
}

// Range is an OSV range: its type and its events in order.
type Range struct {
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event is one OSV range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// Criterion is one NVD cpeMatch entry (vulnerable true).
type Criterion struct {
	Criteria              string `json:"criteria"`
	MatchCriteriaID       string `json:"matchCriteriaId,omitempty"`
	VersionStartIncluding string `json:"versionStartIncluding,omitempty"`
	VersionStartExcluding string `json:"versionStartExcluding,omitempty"`
	VersionEndIncluding   string `json:"versionEndIncluding,omitempty"`
	VersionEndExcluding   string `json:"versionEndExcluding,omitempty"`
}

// CVSS is one base score.
type CVSS struct {
	Version   string  `json:"version"`
	BaseScore float64 `json:"base_score"`
	Vector    string  `json:"vector"`
	Type      string  `json:"type,omitempty"` // Primary or Secondary
	Source    string  `json:"source,omitempty"`
}

// KEVEntry is one CISA Known Exploited Vulnerabilities entry.
type KEVEntry struct {
	CVE                string `json:"cve_id"`
	VendorProject      string `json:"vendor_project,omitempty"`
	Product            string `json:"product,omitempty"`
	Name               string `json:"name,omitempty"`
	DateAdded          string `json:"date_added"`
	DueDate            string `json:"due_date,omitempty"`
	RansomwareCampaign string `json:"known_ransomware_campaign_use,omitempty"`
}

// IDs returns the record's id and aliases.
func (r *Record) IDs() []string { return append([]string{r.ID}, r.Aliases...) }

// CVEs returns the CVE ids among the record's id and aliases, sorted.
func (r *Record) CVEs() []string {
	var out []string
	for _, id := range r.IDs() {
		if strings.HasPrefix(id, "CVE-") {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// KEVLookup finds KEV entries by CVE id.
type KEVLookup func(cve string) (KEVEntry, bool)

// KEVOf reports the record's KEV listing through its id or aliases, and the
// related ids that are in KEV (shown as such, not as KEV).
func (r *Record) KEVOf(kev KEVLookup) (listed *KEVEntry, related []string) {
	if kev == nil {
		return nil, nil
	}
	for _, id := range r.IDs() {
		if e, ok := kev(id); ok {
			listed = &e
			break
		}
	}
	for _, id := range r.Related {
		if _, ok := kev(id); ok {
			related = append(related, id)
		}
	}
	sort.Strings(related)
	return listed, related
}
