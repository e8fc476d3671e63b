package vigilance

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
)

// Finding statuses and risks.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"

	RiskUntriaged    = "untriaged"
	RiskControlled   = "controlled"
	RiskUncontrolled = "uncontrolled"
)

// Finding is one vulnerability in one component of one release: the shape
// the offline scan prints and the server keeps (with triage and exposure
// added there).
type Finding struct {
	ID              string      `json:"id"`
	VulnerabilityID string      `json:"vulnerability_id"`
	Source          string      `json:"source"`
	Aliases         []string    `json:"aliases"`
	CVEs            []string    `json:"cve_ids"`
	Summary         string      `json:"summary,omitempty"`
	KEV             bool        `json:"kev"`
	KEVEntry        *KEVEntry   `json:"kev_entry,omitempty"`
	KEVRelated      []string    `json:"kev_related"`
	CVSS            []CVSS      `json:"cvss,omitempty"`
	Release         string      `json:"release"`
	Component       Component   `json:"component"`
	Criteria        []Criterion `json:"matched_criteria,omitempty"`
	Status          string      `json:"status"`
	Risk            string      `json:"risk"`
}

// FindingID is a finding's stable id: the same vulnerability in the same
// component of the same release always gets the same id.
func FindingID(vulnID, release string, c Component) string {
	h := sha256.Sum256([]byte(vulnID + "\x00" + release + "\x00" + c.BOMRef + "\x00" + c.PURL + "\x00" + c.CPE + "\x00" + c.Version))
	return "F-" + hex.EncodeToString(h[:8])
}

// Index holds records by what they affect, so a component is compared
// only with the records of its package or product, and the NVD records by
// CVE id (for CVSS scores of OSV findings).
type Index struct {
	byPackage map[PackageKey][]*Record
	byProduct map[ProductKey][]*Record
	byCVE     map[string]*Record
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byPackage: map[PackageKey][]*Record{}, byProduct: map[ProductKey][]*Record{}, byCVE: map[string]*Record{}}
}

// Add indexes a record (withdrawn ones are kept out).
func (ix *Index) Add(r *Record) {
	if r.Withdrawn {
		return
	}
	pkgs, products := r.Keys()
	for _, k := range pkgs {
		ix.byPackage[k] = append(ix.byPackage[k], r)
	}
	for _, k := range products {
		ix.byProduct[k] = append(ix.byProduct[k], r)
	}
	if r.Source == SourceNVD {
		ix.byCVE[r.ID] = r
	}
}

// AddForCVSS indexes an NVD record by its CVE id only: it gives OSV
// findings their CVSS scores without being matched itself.
func (ix *Index) AddForCVSS(r *Record) {
	if r.Source == SourceNVD && !r.Withdrawn {
		ix.byCVE[r.ID] = r
	}
}

// Candidates returns the records that may affect c.
func (ix *Index) Candidates(c Component) []*Record {
	var out []*Record
	if k, _, ok := c.Package(); ok {
		out = append(out, ix.byPackage[k]...)
	}
	if k, _, ok := c.Product(); ok {
		out = append(out, ix.byProduct[k]...)
	}
	return out
}

// NVD returns the NVD record of a CVE id, if indexed.
func (ix *Index) NVD(cve string) *Record { return ix.byCVE[cve] }

// Scan matches a release's components against the index and returns its
// findings, in order of vulnerability id then component. A vulnerability
// known by an OSV id and by its CVE in NVD is one finding (the OSV id,
// with NVD's CVSS and criteria).
func Scan(release string, components []Component, ix *Index, kev KEVLookup) []Finding {
	var out []Finding
	for _, c := range components {
		byKey := map[string]int{} // dedupe key → index in out, per component
		for _, r := range ix.Candidates(c) {
			ok, criteria := Match(r, c)
			if !ok {
				continue
			}
			key := dedupeKey(r)
			if i, seen := byKey[key]; seen {
				merge(&out[i], r, criteria)
				continue
			}
			byKey[key] = len(out)
			out = append(out, NewFinding(release, c, r, criteria, ix, kev))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VulnerabilityID != out[j].VulnerabilityID {
			return out[i].VulnerabilityID < out[j].VulnerabilityID
		}
		return out[i].Component.BOMRef < out[j].Component.BOMRef
	})
	return out
}

func dedupeKey(r *Record) string {
	if cves := r.CVEs(); len(cves) > 0 {
		return cves[0]
	}
	return r.ID
}

// NewFinding builds the finding of record r on component c.
func NewFinding(release string, c Component, r *Record, criteria []Criterion, ix *Index, kev KEVLookup) Finding {
	f := Finding{ID: FindingID(r.ID, release, c), VulnerabilityID: r.ID, Source: r.Source, Aliases: nonNil(r.Aliases), CVEs: nonNil(r.CVEs()),
		Summary: r.Summary, Release: release, Component: c, Criteria: criteria, CVSS: r.CVSS, Status: StatusOpen, Risk: RiskUntriaged}
	if r.Source == SourceOSV && ix != nil {
		for _, cve := range f.CVEs {
			if n := ix.NVD(cve); n != nil {
				f.CVSS = n.CVSS
				break
			}
		}
	}
	listed, related := r.KEVOf(kev)
	f.KEV, f.KEVEntry, f.KEVRelated = listed != nil, listed, nonNil(related)
	return f
}

func merge(f *Finding, r *Record, criteria []Criterion) {
	if r.Source == SourceNVD {
		f.CVSS, f.Criteria = r.CVSS, append(f.Criteria, criteria...)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
