package vigilance

import (
	"sort"
	"strings"

	"github.com/package-url/packageurl-go"
)

// Change is a component whose version changed between two SBOMs.
type Change struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
	PURL string `json:"purl,omitempty"` // the new one
}

// Diff is what changed between two releases' SBOMs.
type Diff struct {
	Added   []Component `json:"added"`
	Removed []Component `json:"removed"`
	Changed []Change    `json:"changed"`
}

// identity is what a component is across versions: its purl without the
// version (or, without a purl, its CPE vendor:product, or its name).
func identity(c Component) string {
	if c.PURL != "" {
		if p, err := packageurl.FromString(c.PURL); err == nil {
			p.Version = ""
			return "purl:" + p.ToString()
		}
	}
	if k, _, ok := c.Product(); ok {
		return "cpe:" + k.Vendor + ":" + k.Product + ":" + c.Name
	}
	return "name:" + c.Name
}

// DiffSBOMs compares two releases' components. Components with the same
// identity pair up in version order (an SBOM may hold two copies of one
// library, e.g. a system OpenSSL and a statically linked one); unpaired
// ones are added or removed, and an unchanged version is not reported.
func DiffSBOMs(from, to []Component) Diff {
	group := func(cs []Component) map[string][]Component {
		m := map[string][]Component{}
		for _, c := range cs {
			m[identity(c)] = append(m[identity(c)], c)
		}
		for _, g := range m {
			sort.Slice(g, func(i, j int) bool { return CompareNVD(g[i].Version, g[j].Version) < 0 })
		}
		return m
	}
	a, b := group(from), group(to)
	d := Diff{Added: []Component{}, Removed: []Component{}, Changed: []Change{}}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		ga, gb := a[k], b[k]
		n := min(len(ga), len(gb))
		for i := 0; i < n; i++ {
			if ga[i].Version != gb[i].Version {
				d.Changed = append(d.Changed, Change{Name: gb[i].Name, From: ga[i].Version, To: gb[i].Version, PURL: gb[i].PURL})
			}
		}
		d.Removed = append(d.Removed, ga[n:]...)
		d.Added = append(d.Added, gb[n:]...)
	}
	sort.SliceStable(d.Changed, func(i, j int) bool { return strings.ToLower(d.Changed[i].Name) < strings.ToLower(d.Changed[j].Name) })
	return d
}
