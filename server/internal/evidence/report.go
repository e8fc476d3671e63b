// Package evidence is what a device maker shows an auditor: the fleet
// patching report (per release, devices eligible and committed, time from
// publish to commit; per site, the share of devices on a release with no
// open uncontrolled or known-exploited finding), and the evidence bundle,
// a zip of every record of a period (SBOMs, findings with triage and
// clocks, VEX, disclosure cases, incidents with timelines, notices with
// delivery and acknowledgement, rollouts with approvals, the patching
// report, and the audit-chain segment with its verification) with a
// manifest of every file's SHA-256, which `vigil evidence verify` checks
// offline (api/evidencezip).
//
// Threat model: the bundle proves integrity against accidental or later
// change of its files (the manifest names any file that differs) and ties
// its audit segment to the chain's hashes; it is not signed, so it does
// not prove who made it: keep its manifest hash with the auditor.
package evidence

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// ReportStore is what the patching report reads.
type ReportStore interface {
	state.ReleaseHistory
	state.CommitLog
	InstalledCounts(ctx context.Context, product string) ([]state.InstalledCount, error)
	DevicesOf(ctx context.Context, product string) ([]state.Device, error)
	Findings(ctx context.Context, f state.FindingFilter) ([]state.FindingRecord, error)
}

// Reporter builds patching reports.
type Reporter struct {
	st  ReportStore
	now func() time.Time
}

// NewReporter returns a reporter.
func NewReporter(st ReportStore) *Reporter { return &Reporter{st: st, now: time.Now} }

// Patching builds the report for product (every product when empty).
func (r *Reporter) Patching(ctx context.Context, product string) (api.PatchingReport, error) {
	out := api.PatchingReport{Generated: r.now().UTC(), Releases: []api.ReleaseMetrics{}, Sites: []api.SiteMetrics{}}
	history, err := r.st.Releases(ctx, product)
	if err != nil {
		return out, err
	}
	var products []string
	byProduct := map[string][]state.ReleaseNote{}
	for _, n := range history {
		if _, ok := byProduct[n.Product]; !ok {
			products = append(products, n.Product)
		}
		byProduct[n.Product] = append(byProduct[n.Product], n)
	}
	if product != "" && !slices.Contains(products, product) {
		products = append(products, product)
	}
	sites := map[string]*api.SiteMetrics{}
	for _, p := range products {
		if err := r.product(ctx, p, byProduct[p], &out, sites); err != nil {
			return out, err
		}
	}
	names := make([]string, 0, len(sites))
	for n := range sites {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := sites[n]
		if s.Devices > 0 {
			s.Share = float64(s.Clean) / float64(s.Devices)
		}
		out.Sites = append(out.Sites, *s)
	}
	return out, nil
}

func (r *Reporter) product(ctx context.Context, product string, notes []state.ReleaseNote, out *api.PatchingReport, sites map[string]*api.SiteMetrics) error {
	counts, err := r.st.InstalledCounts(ctx, product)
	if err != nil {
		return err
	}
	commits, err := r.st.CommitTimes(ctx, product)
	if err != nil {
		return err
	}
	open, err := r.st.Findings(ctx, state.FindingFilter{Product: product, Status: "open", NoData: true})
	if err != nil {
		return err
	}
	dirty := map[string]bool{}
	for _, f := range open {
		if f.Risk == "uncontrolled" || f.KEV {
			dirty[f.Version] = true
		}
	}
	for _, c := range counts {
		s := sites[c.Site]
		if s == nil {
			s = &api.SiteMetrics{Site: c.Site}
			sites[c.Site] = s
		}
		s.Devices += c.Count
		if !dirty[c.Version] {
			s.Clean += c.Count
		}
	}
	byVersion := map[string][]time.Time{}
	committedDevices := map[string]map[string]bool{}
	for _, c := range commits {
		byVersion[c.Version] = append(byVersion[c.Version], c.At)
		if committedDevices[c.Version] == nil {
			committedDevices[c.Version] = map[string]bool{}
		}
		committedDevices[c.Version][c.Device] = true
	}
	devices, err := r.st.DevicesOf(ctx, product)
	if err != nil {
		return err
	}
	for _, n := range notes {
		m := api.ReleaseMetrics{Release: n.Product + "@" + n.Version, Published: n.Published, Revoked: n.Revoked}
		m.Committed = len(committedDevices[n.Version])
		// Eligible: devices in service that committed it, or still run an
		// older version (they can install it).
		m.Eligible = m.Committed
		for _, d := range devices {
			if !d.Decommissioned && !committedDevices[n.Version][d.ID] && release.Compare(d.Installed, n.Version) < 0 {
				m.Eligible++
			}
		}
		var hours []float64
		for _, at := range byVersion[n.Version] {
			if !at.Before(n.Published) {
				hours = append(hours, at.Sub(n.Published).Hours())
			}
		}
		m.MedianHours, m.P90Hours = quantile(hours, 0.5), quantile(hours, 0.9)
		out.Releases = append(out.Releases, m)
	}
	return nil
}

// quantile is the nearest-rank quantile q of xs (nil when xs is empty).
func quantile(xs []float64, q float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(q*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	v := float64(int64(s[i]*100+0.5)) / 100
	return &v
}
