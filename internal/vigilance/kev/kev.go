// Package kev reads CISA's Known Exploited Vulnerabilities catalog
// (known_exploited_vulnerabilities.json): catalogVersion, dateReleased and
// vulnerabilities[] with cveID, dateAdded, dueDate and
// knownRansomwareCampaignUse.
package kev

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// MaxEntries bounds a catalog.
const MaxEntries = 100000

// Catalog is a parsed KEV catalog.
type Catalog struct {
	Version      string
	DateReleased string
	Entries      []vigilance.KEVEntry
}

var (
	cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,12}$`)
	date  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// Parse reads a catalog; an entry without a CVE id or a dateAdded refuses
// the whole catalog (it is one signed-off publication).
func Parse(b []byte) (*Catalog, error) {
	var raw struct {
		CatalogVersion  string `json:"catalogVersion"`
		DateReleased    string `json:"dateReleased"`
		Vulnerabilities []struct {
			CVEID                      string `json:"cveID"`
			VendorProject              string `json:"vendorProject"`
			Product                    string `json:"product"`
			VulnerabilityName          string `json:"vulnerabilityName"`
			DateAdded                  string `json:"dateAdded"`
			DueDate                    string `json:"dueDate"`
			KnownRansomwareCampaignUse string `json:"knownRansomwareCampaignUse"`
		} `json:"vulnerabilities"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("not a KEV catalog: %w", err)
	}
	if raw.Vulnerabilities == nil {
		return nil, fmt.Errorf("not a KEV catalog: no vulnerabilities[]")
	}
	if len(raw.Vulnerabilities) > MaxEntries {
		return nil, fmt.Errorf("KEV catalog lists more than %d entries", MaxEntries)
	}
	c := &Catalog{Version: raw.CatalogVersion, DateReleased: raw.DateReleased}
	for i, v := range raw.Vulnerabilities {
		if !cveID.MatchString(v.CVEID) || !date.MatchString(v.DateAdded) {
			return nil, fmt.Errorf("KEV entry %d: cveID %q or dateAdded %q is malformed", i, v.CVEID, v.DateAdded)
		}
		c.Entries = append(c.Entries, vigilance.KEVEntry{CVE: v.CVEID, VendorProject: v.VendorProject, Product: v.Product,
			Name: v.VulnerabilityName, DateAdded: v.DateAdded, DueDate: v.DueDate, RansomwareCampaign: v.KnownRansomwareCampaignUse})
	}
	return c, nil
}

// Lookup returns the catalog as a lookup by CVE id.
func (c *Catalog) Lookup() vigilance.KEVLookup {
	m := make(map[string]vigilance.KEVEntry, len(c.Entries))
	for _, e := range c.Entries {
		m[e.CVE] = e
	}
	return func(cve string) (vigilance.KEVEntry, bool) { e, ok := m[cve]; return e, ok }
}
