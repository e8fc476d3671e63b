// Package nvd reads NVD CVE API 2.0 records: one `cve` object per file (as
// fkie-cad/nvd-json-data-feeds stores them) or an API page with
// `vulnerabilities[].cve`. It keeps what matching and findings need: the
// id, status (Rejected withdraws), descriptions, CVSS base scores (v4.0,
// v3.1, v3.0) and the vulnerable cpeMatch criteria of every configuration
// node (a node ANDed with a non-vulnerable platform contributes only its
// vulnerable criteria).
//
// Threat model: untrusted input; a malformed record is refused whole, and
// the counts of package vigilance bound what one record may hold.
package nvd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

type cvssData struct {
	Version      string  `json:"version"`
	BaseScore    float64 `json:"baseScore"`
	VectorString string  `json:"vectorString"`
}

type metric struct {
	Source   string   `json:"source"`
	Type     string   `json:"type"`
	CVSSData cvssData `json:"cvssData"`
}

type cve struct {
	ID             string `json:"id"`
	Published      string `json:"published"`
	LastModified   string `json:"lastModified"`
	VulnStatus     string `json:"vulnStatus"`
	CISAExploitAdd string `json:"cisaExploitAdd"`
	Descriptions   []struct {
		Lang  string `json:"lang"`
		Value string `json:"value"`
	} `json:"descriptions"`
	Metrics struct {
		V40 []metric `json:"cvssMetricV40"`
		V31 []metric `json:"cvssMetricV31"`
		V30 []metric `json:"cvssMetricV30"`
	} `json:"metrics"`
	Configurations []struct {
		Nodes []struct {
			CPEMatch []struct {
				Vulnerable bool `json:"vulnerable"`
				vigilance.Criterion
			} `json:"cpeMatch"`
		} `json:"nodes"`
	} `json:"configurations"`
}

// BadRecord is a record of an API page that did not parse; the others
// are still returned.
type BadRecord struct {
	Index int    // in vulnerabilities[]
	ID    string // the record's id, if it could be read
	Err   error
}

// Parse reads one file: a cve object or an API page. It returns every
// record that parsed and, for a page, the ones that did not (a malformed
// record is skipped, never half-read); err is set when the file itself is
// not NVD JSON, or for a single cve object that does not parse.
func Parse(b []byte) (recs []*vigilance.Record, bad []BadRecord, err error) {
	var probe struct {
		Vulnerabilities []struct {
			CVE json.RawMessage `json:"cve"`
		} `json:"vulnerabilities"`
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, nil, fmt.Errorf("not NVD JSON: %w", err)
	}
	if probe.ID != "" {
		r, err := parseCVE(b)
		if err != nil {
			return nil, nil, err
		}
		return []*vigilance.Record{r}, nil, nil
	}
	if probe.Vulnerabilities == nil {
		return nil, nil, fmt.Errorf("neither an NVD cve object nor an API page with vulnerabilities[]")
	}
	for i, v := range probe.Vulnerabilities {
		r, err := parseCVE(v.CVE)
		if err != nil {
			var id struct {
				ID string `json:"id"`
			}
			json.Unmarshal(v.CVE, &id)
			if len(id.ID) > vigilance.MaxIDLength {
				id.ID = id.ID[:vigilance.MaxIDLength]
			}
			bad = append(bad, BadRecord{Index: i, ID: id.ID, Err: err})
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad, nil
}

// ParseOne reads a single cve object.
func ParseOne(b []byte) (*vigilance.Record, error) { return parseCVE(b) }

func parseCVE(b []byte) (*vigilance.Record, error) {
	var c cve
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not an NVD cve object: %w", err)
	}
	if !strings.HasPrefix(c.ID, "CVE-") || len(c.ID) > vigilance.MaxIDLength {
		return nil, fmt.Errorf("NVD record id %q is not a CVE id", c.ID)
	}
	r := &vigilance.Record{Source: vigilance.SourceNVD, ID: c.ID, Withdrawn: c.VulnStatus == "Rejected", CISAExploitAdd: c.CISAExploitAdd}
	r.Published, r.Modified = nvdTime(c.Published), nvdTime(c.LastModified)
	for _, d := range c.Descriptions {
		if d.Lang == "en" {
			r.Summary = firstSentence(d.Value)
			break
		}
	}
	for _, set := range [][]metric{c.Metrics.V40, c.Metrics.V31, c.Metrics.V30} {
		for _, m := range orderPrimaryFirst(set) {
			r.CVSS = append(r.CVSS, vigilance.CVSS{Version: m.CVSSData.Version, BaseScore: m.CVSSData.BaseScore, Vector: m.CVSSData.VectorString, Type: m.Type, Source: m.Source})
		}
	}
	for _, conf := range c.Configurations {
		for _, n := range conf.Nodes {
			for _, m := range n.CPEMatch {
				if !m.Vulnerable {
					continue
				}
				if len(r.Criteria) >= vigilance.MaxCriteria {
					return nil, fmt.Errorf("%s: more than %d cpeMatch criteria", c.ID, vigilance.MaxCriteria)
				}
				if _, err := vigilance.ParseCPE(m.Criteria); err != nil {
					return nil, fmt.Errorf("%s: criteria %q: %v", c.ID, m.Criteria, err)
				}
				r.Criteria = append(r.Criteria, m.Criterion)
			}
		}
	}
	return r, nil
}

func orderPrimaryFirst(ms []metric) []metric {
	out := make([]metric, 0, len(ms))
	for _, m := range ms {
		if m.Type == "Primary" {
			out = append(out, m)
		}
	}
	for _, m := range ms {
		if m.Type != "Primary" {
			out = append(out, m)
		}
	}
	return out
}

func nvdTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02T15:04:05.000", time.RFC3339Nano, "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// MaxSummary bounds the summary kept, in bytes.
const MaxSummary = 512

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 && i < MaxSummary {
		return s[:i+1]
	}
	if len(s) > MaxSummary {
		return s[:MaxSummary]
	}
	return s
}
