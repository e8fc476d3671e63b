// Package osv reads OSV records (schema 1.x, https://ossf.github.io/osv-schema/)
// with the schema's official Go bindings and normalizes them for matching.
//
// Threat model: records come from a feed file or URL: untrusted. A record
// is refused whole (never half-used) when it does not parse, has no id, or
// exceeds the limits of package vigilance; the zero time
// (0001-01-01T00:00:00Z, which the Go vulnerability database writes) is
// accepted as "not given".
package osv

import (
	"fmt"

	"github.com/ossf/osv-schema/bindings/go/osvschema"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// Parse reads one OSV record.
func Parse(b []byte) (*vigilance.Record, error) {
	var v osvschema.Vulnerability
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("not an OSV record: %w", err)
	}
	id := v.GetId()
	if id == "" || len(id) > vigilance.MaxIDLength {
		return nil, fmt.Errorf("OSV record without a valid id")
	}
	if len(v.GetAliases()) > vigilance.MaxIDs || len(v.GetRelated()) > vigilance.MaxIDs || len(v.GetAffected()) > vigilance.MaxAffected {
		return nil, fmt.Errorf("%s: more aliases, related ids or affected packages than the limits allow", id)
	}
	r := &vigilance.Record{Source: vigilance.SourceOSV, ID: id, Aliases: v.GetAliases(), Related: v.GetRelated(), Summary: v.GetSummary(),
		Withdrawn: v.GetWithdrawn() != nil}
	if t := v.GetModified(); t != nil && !t.AsTime().IsZero() && t.GetSeconds() > 0 {
		r.Modified = t.AsTime().UTC()
	}
	if t := v.GetPublished(); t != nil && t.GetSeconds() > 0 {
		r.Published = t.AsTime().UTC()
	}
	for _, a := range v.GetAffected() {
		aff := vigilance.Affected{Ecosystem: a.GetPackage().GetEcosystem(), Package: a.GetPackage().GetName(), Versions: a.GetVersions()}
		for _, rg := range a.GetRanges() {
			if len(rg.GetEvents()) > vigilance.MaxEvents {
				return nil, fmt.Errorf("%s: a range has more than %d events", id, vigilance.MaxEvents)
			}
			out := vigilance.Range{Type: rg.GetType().String()}
			for _, e := range rg.GetEvents() {
				out.Events = append(out.Events, vigilance.Event{Introduced: e.GetIntroduced(), Fixed: e.GetFixed(), LastAffected: e.GetLastAffected(), Limit: e.GetLimit()})
			}
			aff.Ranges = append(aff.Ranges, out)
		}
		r.Affected = append(r.Affected, aff)
	}
	return r, nil
}
