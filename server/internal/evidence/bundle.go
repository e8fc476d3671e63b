package evidence

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/evidencezip"
	"github.com/vigil-ota/vigil/internal/buildinfo"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

// Limits, with their units.
const (
	// MaxPeriod bounds one bundle's period.
	MaxPeriod = 3 * 366 * 24 * time.Hour
	// MaxSBOMBytes bounds one SBOM read into a bundle, in bytes.
	MaxSBOMBytes = 64 << 20
	auditPage    = 1000
)

// Sources are what a bundle collects from.
type Sources struct {
	Catalog interface {
		Releases(ctx context.Context) ([]release.Published, error)
		OpenTarget(ctx context.Context, p release.Published) (io.ReadCloser, error)
	}
	Vigilance interface {
		Findings(ctx context.Context, f vigilance.Filter) (api.FindingList, error)
		VEX(ctx context.Context, product, version, format string) ([]byte, string, error)
	}
	Cases interface {
		CasesIn(ctx context.Context, since, until time.Time) ([]api.CVDCase, error)
	}
	Incidents interface {
		IncidentsIn(ctx context.Context, since, until time.Time) (api.IncidentList, error)
		Timeline(ctx context.Context, id string) (api.Timeline, error)
	}
	Notices interface {
		NoticesIn(ctx context.Context, since, until time.Time) ([]api.Notice, error)
	}
	Rollouts interface {
		List(ctx context.Context) (api.RolloutList, error)
	}
	Audit interface {
		AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
	}
	Reporter *Reporter
}

// Exporter writes evidence bundles.
type Exporter struct {
	src Sources
	now func() time.Time
}

// NewExporter returns an exporter.
func NewExporter(src Sources) *Exporter { return &Exporter{src: src, now: time.Now} }

// CheckPeriod validates a bundle's period.
func CheckPeriod(since, until time.Time) error {
	switch {
	case since.IsZero() || until.IsZero():
		return apperr.New(apperr.Invalid, "since and until are required (RFC 3339)")
	case !until.After(since):
		return apperr.New(apperr.Invalid, "until %s is not after since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	case until.Sub(since) > MaxPeriod:
		return apperr.New(apperr.TooLarge, "a bundle covers at most %s; export several", MaxPeriod)
	}
	return nil
}

// Export writes the bundle for [since, until) to w.
func (e *Exporter) Export(ctx context.Context, w io.Writer, since, until time.Time) error {
	if err := CheckPeriod(since, until); err != nil {
		return err
	}
	zw := evidencezip.NewWriter(w, evidencezip.Manifest{Generated: e.now().UTC().Truncate(time.Second), Since: since.UTC(), Until: until.UTC(), Server: buildinfo.Version})
	steps := []func(context.Context, *evidencezip.Writer, time.Time, time.Time) error{e.releases, e.records, e.chain}
	for _, step := range steps {
		if err := step(ctx, zw, since, until); err != nil {
			return err
		}
	}
	return zw.Close()
}

// releases adds the SBOM and the VEX of every release published in the
// period (by the release history).
func (e *Exporter) releases(ctx context.Context, zw *evidencezip.Writer, since, until time.Time) error {
	history, err := e.src.Reporter.st.Releases(ctx, "")
	if err != nil {
		return err
	}
	pubs, err := e.src.Catalog.Releases(ctx)
	if err != nil {
		return err
	}
	current := map[string]release.Published{}
	for _, p := range pubs {
		current[p.Release()] = p
	}
	var listed []map[string]any
	for _, n := range history {
		if n.Published.Before(since) || !n.Published.Before(until) {
			continue
		}
		rel := n.Product + "@" + n.Version
		entry := map[string]any{"release": rel, "target": n.Target, "published": n.Published, "revoked": n.Revoked}
		if p, ok := current[rel]; ok && p.Custom.SBOM != "" {
			rc, err := e.src.Catalog.OpenTarget(ctx, release.Published{Product: p.Product, Target: p.Custom.SBOM, SHA256: p.Custom.SBOMSHA256})
			if err != nil {
				return err
			}
			b, err := io.ReadAll(io.LimitReader(rc, MaxSBOMBytes))
			rc.Close()
			if err != nil {
				return err
			}
			if err := zw.Add("sboms/"+rel+".cdx.json", b); err != nil {
				return err
			}
			entry["sbom"] = "sboms/" + rel + ".cdx.json"
			vex, _, err := e.src.Vigilance.VEX(ctx, p.Product, n.Version, api.VEXFormatCycloneDX)
			if err == nil {
				if err := zw.Add("vex/"+rel+".cdx.json", vex); err != nil {
					return err
				}
				entry["vex"] = "vex/" + rel + ".cdx.json"
			} else if !apperr.Is(err, apperr.NotFound) {
				return err
			}
		}
		listed = append(listed, entry)
	}
	if listed == nil {
		listed = []map[string]any{}
	}
	return zw.AddJSON("releases.json", listed)
}

// records adds findings, cases, incidents with timelines, notices,
// rollouts and the patching report.
func (e *Exporter) records(ctx context.Context, zw *evidencezip.Writer, since, until time.Time) error {
	findings, err := e.src.Vigilance.Findings(ctx, vigilance.Filter{})
	if err != nil {
		return err
	}
	if err := zw.AddJSON("findings.json", findings); err != nil {
		return err
	}
	cases, err := e.src.Cases.CasesIn(ctx, since, until)
	if err != nil {
		return err
	}
	if err := zw.AddJSON("cvd-cases.json", cases); err != nil {
		return err
	}
	incs, err := e.src.Incidents.IncidentsIn(ctx, since, until)
	if err != nil {
		return err
	}
	for _, inc := range incs.Incidents {
		tl, err := e.src.Incidents.Timeline(ctx, inc.ID)
		if err != nil {
			return err
		}
		if err := zw.AddJSON("incidents/"+inc.ID+".json", tl); err != nil {
			return err
		}
	}
	notices, err := e.src.Notices.NoticesIn(ctx, since, until)
	if err != nil {
		return err
	}
	if err := zw.AddJSON("notices.json", notices); err != nil {
		return err
	}
	ro, err := e.src.Rollouts.List(ctx)
	if err != nil {
		return err
	}
	if err := zw.AddJSON("rollouts.json", ro); err != nil {
		return err
	}
	rep, err := e.src.Reporter.Patching(ctx, "")
	if err != nil {
		return err
	}
	return zw.AddJSON("reports/patching.json", rep)
}

// chain verifies the whole audit chain from its first entry and adds the
// entries of the period (rollout approvals, triage history and every other
// change are there), described by the hashes that bound the segment.
func (e *Exporter) chain(ctx context.Context, zw *evidencezip.Writer, since, until time.Time) error {
	var after int64
	prev := audit.GenesisHash
	var segment []audit.Entry
	c := evidencezip.Chain{Verified: true}
	for {
		page, err := e.src.Audit.AuditEntries(ctx, after, time.Time{}, auditPage)
		if err != nil {
			return err
		}
		if c.Verified {
			if err := audit.Verify(page, prev, after); err != nil {
				c.Verified, c.Problem = false, err.Error()
			}
		}
		for _, en := range page {
			if !en.Time.Before(since) && en.Time.Before(until) {
				if len(segment) == 0 {
					c.FirstSeq, c.PrevHash = en.Seq, en.PrevHash
				}
				segment = append(segment, en)
			}
			prev, after = en.Hash, en.Seq
		}
		if len(page) < auditPage {
			break
		}
	}
	if segment == nil {
		segment = []audit.Entry{}
	} else {
		last := segment[len(segment)-1]
		c.LastSeq, c.LastHash, c.Entries = last.Seq, last.Hash, len(segment)
	}
	zw.SetChain(c)
	// Compact: indenting would re-format each entry's details, which its
	// hash covers byte for byte.
	b, err := json.Marshal(segment)
	if err != nil {
		return err
	}
	return zw.Add(evidencezip.ChainName, b)
}
