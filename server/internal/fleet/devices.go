package fleet

import (
	"context"
	"slices"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Device page limits.
const (
	// DefaultDevicePage and MaxDevicePage bound one page of devices.
	DefaultDevicePage = 100
	MaxDevicePage     = 1000
)

// DeviceQuery selects a page of devices: empty fields select all.
type DeviceQuery struct {
	Site, CareArea, Product, Version, Prefix string
	Offset, Limit                            int
}

// DevicePage returns a page of devices with what their agents last
// reported and any unfinished assignment. A site-scoped operator sees its
// own sites only (asking for another site is refused).
func (r *Registry) DevicePage(ctx context.Context, q DeviceQuery) (api.DevicePage, error) {
	sq, err := r.deviceQuery(ctx, q)
	if err != nil {
		return api.DevicePage{}, err
	}
	devs, total, err := r.reg.DevicePage(ctx, sq)
	if err != nil {
		return api.DevicePage{}, err
	}
	out := api.DevicePage{Devices: make([]api.DeviceRow, 0, len(devs)), Total: total, Offset: sq.Offset, Limit: sq.Limit}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	latest, err := r.events.LatestEvents(ctx, ids)
	if err != nil {
		return out, err
	}
	pending, err := r.pending(ctx, devs)
	if err != nil {
		return out, err
	}
	for _, d := range devs {
		row := api.DeviceRow{ID: d.ID, Product: d.Product, Hardware: d.Hardware, Site: d.Site, CareArea: d.CareArea, Installed: d.Installed,
			Decommissioned: d.Decommissioned, LastSeen: d.LastSeen, State: api.StateIdle, Pending: pending[d.ID]}
		if ev, ok := latest[d.ID]; ok {
			row.State, row.StateReason, row.StateTime = ev.State, ev.Reason, ev.Time
			row.InUse = ev.State == api.StateDeferred
		}
		out.Devices = append(out.Devices, row)
	}
	return out, nil
}

// deviceQuery validates a query and scopes it to the caller's sites.
func (r *Registry) deviceQuery(ctx context.Context, q DeviceQuery) (state.DeviceQuery, error) {
	for _, f := range []struct{ name, v string }{{"site", q.Site}, {"care_area", q.CareArea}, {"product", q.Product}, {"version", q.Version}, {"q", q.Prefix}} {
		if err := input.Line(f.name, f.v, input.MaxName); err != nil {
			return state.DeviceQuery{}, err
		}
	}
	if q.Offset < 0 || q.Limit < 0 || q.Limit > MaxDevicePage {
		return state.DeviceQuery{}, apperr.New(apperr.Invalid, "offset must be ≥ 0 and limit between 0 and %d", MaxDevicePage)
	}
	if q.Limit == 0 {
		q.Limit = DefaultDevicePage
	}
	sq := state.DeviceQuery{CareArea: q.CareArea, Product: q.Product, Version: q.Version, Prefix: q.Prefix, Offset: q.Offset, Limit: q.Limit}
	p, scopedOp := operator.From(ctx)
	switch {
	case q.Site != "" && scopedOp && !p.CanSite(q.Site):
		return sq, apperr.New(apperr.Forbidden, "your token is limited to sites %v; %q is not one of them", p.Sites, q.Site)
	case q.Site != "":
		sq.Sites = []string{q.Site}
	case scopedOp && p.SiteScoped():
		sq.Sites = slices.Clone(p.Sites)
	}
	return sq, nil
}

// pending finds the devices' unfinished assignments in active rollouts.
func (r *Registry) pending(ctx context.Context, devs []state.Device) (map[string]*api.PendingAssignment, error) {
	out := map[string]*api.PendingAssignment{}
	products := map[string]bool{}
	for _, d := range devs {
		products[d.Product] = true
	}
	for product := range products {
		snaps, err := r.cache.activeSnapshots(ctx, product)
		if err != nil {
			return nil, err
		}
		r.cache.with(func() {
			for _, s := range snaps {
				for _, d := range devs {
					if p, ok := s.Progress[d.ID]; ok && !p.State.Final() {
						out[d.ID] = &api.PendingAssignment{Rollout: s.Rollout.ID, Release: product + "@" + s.Rollout.Plan.Version, State: p.State}
					}
				}
			}
		})
	}
	return out, nil
}

// List returns the newest rollouts (at most MaxListedRollouts), each as
// Status shows it, scoped to the caller's sites.
func (s *Rollouts) List(ctx context.Context) (api.RolloutList, error) {
	rs, err := s.ro.Rollouts(ctx, "")
	if err != nil {
		return api.RolloutList{}, err
	}
	out := api.RolloutList{Rollouts: []api.RolloutStatus{}}
	for i, r := range rs {
		if i >= MaxListedRollouts {
			break
		}
		st, err := s.Status(ctx, r.ID)
		if err != nil {
			return out, err
		}
		if p, ok := operator.From(ctx); ok && p.SiteScoped() && len(st.Counts) == 0 {
			continue // nothing of it at this operator's sites
		}
		out.Rollouts = append(out.Rollouts, st)
	}
	return out, nil
}

// MaxListedRollouts bounds one rollout listing.
const MaxListedRollouts = 200

// Sites returns the sites the caller may see, with their settings.
func (r *Registry) Sites(ctx context.Context) ([]api.Site, error) {
	all, err := r.reg.Sites(ctx)
	if err != nil {
		return nil, err
	}
	p, ok := operator.From(ctx)
	out := []api.Site{}
	for _, st := range all {
		if !ok || p.CanSite(st.Name) {
			out = append(out, siteFromState(st))
		}
	}
	return out, nil
}

// Versions counts a product's devices in service by installed version, at
// the caller's sites.
func (r *Registry) Versions(ctx context.Context, product string) (map[string]int, error) {
	counts, err := r.reg.InstalledCounts(ctx, product)
	if err != nil {
		return nil, err
	}
	p, ok := operator.From(ctx)
	out := map[string]int{}
	for _, c := range counts {
		if !ok || p.CanSite(c.Site) {
			out[c.Version] += c.Count
		}
	}
	return out, nil
}
