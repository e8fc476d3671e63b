package vigilance

import (
	"strings"

	"github.com/facebookincubator/nvdtools/wfn"
	"github.com/package-url/packageurl-go"
	"golang.org/x/mod/semver"
)

// Keys by which records are indexed, and components looked up.
type (
	// PackageKey is an OSV (ecosystem, package), package lower-cased.
	PackageKey struct{ Ecosystem, Package string }
	// ProductKey is a CPE (vendor, product), as formatted (escaped).
	ProductKey struct{ Vendor, Product string }
)

// Package returns the OSV key and version of a component's purl, for the
// ecosystems Vigil matches (Go); ok is false otherwise.
func (c Component) Package() (PackageKey, string, bool) {
	if c.PURL == "" {
		return PackageKey{}, "", false
	}
	p, err := packageurl.FromString(c.PURL)
	if err != nil || p.Type != packageurl.TypeGolang {
		return PackageKey{}, "", false
	}
	name := p.Name
	if p.Namespace != "" {
		name = p.Namespace + "/" + p.Name
	}
	if name == "stdlib" || name == "toolchain" {
		return PackageKey{}, "", false
	}
	return PackageKey{"Go", strings.ToLower(name)}, p.Version, true
}

// ParsedCPE is a CPE 2.3 formatted string, unbound.
type ParsedCPE = wfn.Attributes

// ParseCPE unbinds a CPE 2.3 formatted string: "cpe:2.3:" and the eleven
// attributes, every one present (a truncated string is refused, not
// padded with ANY).
func ParseCPE(s string) (*ParsedCPE, error) {
	if len(s) > MaxCPELength {
		return nil, errTooLong
	}
	if !strings.HasPrefix(s, "cpe:2.3:") || unescapedColons(s) != 12 {
		return nil, errCPEFields
	}
	return wfn.UnbindFmtString(s)
}

// MaxCPELength bounds a CPE string, in bytes.
const MaxCPELength = 1024

type cpeFields struct{}

func (cpeFields) Error() string { return "not a CPE 2.3 formatted string of 13 fields" }

var errCPEFields error = cpeFields{}

func unescapedColons(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ':':
			n++
		}
	}
	return n
}

// Product returns the CPE key and the parsed CPE of a component; ok is
// false without a CPE (or with one that does not parse).
func (c Component) Product() (ProductKey, *ParsedCPE, bool) {
	if c.CPE == "" {
		return ProductKey{}, nil, false
	}
	a, err := ParseCPE(c.CPE)
	if err != nil || a.Vendor == wfn.Any || a.Product == wfn.Any {
		return ProductKey{}, nil, false
	}
	return ProductKey{strings.ToLower(a.Vendor), strings.ToLower(a.Product)}, a, true
}

type tooLong struct{}

func (tooLong) Error() string { return "CPE string too long" }

var errTooLong error = tooLong{}

// MatchOSV reports whether the OSV record affects the component.
func MatchOSV(r *Record, c Component) bool {
	if r.Withdrawn || r.Source != SourceOSV {
		return false
	}
	key, version, ok := c.Package()
	if !ok {
		return false
	}
	v, ok := GoVersion(version)
	if !ok {
		return false
	}
	for _, a := range r.Affected {
		if a.Ecosystem != key.Ecosystem || strings.ToLower(a.Package) != key.Package {
			continue
		}
		for _, listed := range a.Versions {
			if lv, ok := GoVersion(listed); ok && semver.Compare(lv, v) == 0 {
				return true
			}
		}
		for _, rg := range a.Ranges {
			if rg.Type == "SEMVER" && inSemverRange(v, rg.Events) {
				return true
			}
		}
	}
	return false
}

// inSemverRange applies OSV's range evaluation: in order of version,
// introduced opens (inclusive), fixed closes (exclusive), last_affected
// closes after itself.
func inSemverRange(v string, events []Event) bool {
	type ev struct {
		at   string // canonical version; "" = the beginning
		kind int    // 0 introduced, 1 fixed, 2 last_affected
	}
	var evs []ev
	for _, e := range events {
		switch {
		case e.Introduced != "":
			if e.Introduced == "0" {
				evs = append(evs, ev{"", 0})
			} else if x, ok := GoVersion(e.Introduced); ok {
				evs = append(evs, ev{x, 0})
			}
		case e.Fixed != "":
			if x, ok := GoVersion(e.Fixed); ok {
				evs = append(evs, ev{x, 1})
			}
		case e.LastAffected != "":
			if x, ok := GoVersion(e.LastAffected); ok {
				evs = append(evs, ev{x, 2})
			}
		}
	}
	cmp := func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "":
			return -1
		case b == "":
			return 1
		}
		return semver.Compare(a, b)
	}
	// Sort by version (stable, so an event order at one version is kept).
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && cmp(evs[j].at, evs[j-1].at) < 0; j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
	affected := false
	for _, e := range evs {
		switch e.kind {
		case 0:
			if cmp(v, e.at) >= 0 {
				affected = true
			}
		case 1:
			if cmp(v, e.at) >= 0 {
				affected = false
			}
		case 2:
			if cmp(v, e.at) > 0 {
				affected = false
			}
		}
	}
	return affected
}

// MatchNVD returns the record's criteria the component matches (none: no
// match).
func MatchNVD(r *Record, c Component) []Criterion {
	if r.Withdrawn || r.Source != SourceNVD {
		return nil
	}
	_, comp, ok := c.Product()
	if !ok {
		return nil
	}
	var out []Criterion
	for _, cr := range r.Criteria {
		if matchCriterion(cr, comp) {
			out = append(out, cr)
		}
	}
	return out
}

func matchCriterion(cr Criterion, comp *ParsedCPE) bool {
	crit, err := ParseCPE(cr.Criteria)
	if err != nil {
		return false
	}
	if !strings.EqualFold(crit.Part, comp.Part) || !strings.EqualFold(crit.Vendor, comp.Vendor) || !strings.EqualFold(crit.Product, comp.Product) {
		return false
	}
	for _, f := range [][2]string{{crit.Update, comp.Update}, {crit.Edition, comp.Edition}, {crit.Language, comp.Language},
		{crit.SWEdition, comp.SWEdition}, {crit.TargetSW, comp.TargetSW}, {crit.TargetHW, comp.TargetHW}, {crit.Other, comp.Other}} {
		if f[0] != wfn.Any && !strings.EqualFold(f[0], f[1]) {
			return false
		}
	}
	v := wfn.StripSlashes(comp.Version)
	if v == wfn.Any || v == wfn.NA {
		return false // a component must say which version it is
	}
	if crit.Version != wfn.Any {
		return crit.Version != wfn.NA && CompareNVD(wfn.StripSlashes(crit.Version), v) == 0
	}
	if b := cr.VersionStartIncluding; b != "" && CompareNVD(v, b) < 0 {
		return false
	}
	if b := cr.VersionStartExcluding; b != "" && CompareNVD(v, b) <= 0 {
		return false
	}
	if b := cr.VersionEndIncluding; b != "" && CompareNVD(v, b) > 0 {
		return false
	}
	if b := cr.VersionEndExcluding; b != "" && CompareNVD(v, b) >= 0 {
		return false
	}
	return true
}

// Keys returns what a record is indexed by.
func (r *Record) Keys() (pkgs []PackageKey, products []ProductKey) {
	seenP, seenC := map[PackageKey]bool{}, map[ProductKey]bool{}
	for _, a := range r.Affected {
		k := PackageKey{a.Ecosystem, strings.ToLower(a.Package)}
		if !seenP[k] {
			seenP[k] = true
			pkgs = append(pkgs, k)
		}
	}
	for _, cr := range r.Criteria {
		a, err := ParseCPE(cr.Criteria)
		if err != nil {
			continue
		}
		k := ProductKey{strings.ToLower(a.Vendor), strings.ToLower(a.Product)}
		if !seenC[k] {
			seenC[k] = true
			products = append(products, k)
		}
	}
	return pkgs, products
}

// Match reports whether r affects c, and for NVD the criteria it matched.
func Match(r *Record, c Component) (bool, []Criterion) {
	switch r.Source {
	case SourceOSV:
		return MatchOSV(r, c), nil
	case SourceNVD:
		cr := MatchNVD(r, c)
		return len(cr) > 0, cr
	}
	return false, nil
}
