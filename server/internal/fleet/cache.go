package fleet

import (
	"strconv"

	"golang.org/x/sync/singleflight"

	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// cache is one replica's copy of what check-ins and rollout decisions read:
// devices, each product's rollouts, and each rollout's decision state
// (rollout.Snapshot, with its counters).
//
// Freshness: configuration (sites, devices, rollouts, approvals, deferrals)
// is dropped when the database's fleet epoch moves, and progress written by
// other replicas is re-read; both at most every EpochCheckInterval. The
// re-read takes only the rows changed since the last one (by the
// database's clock, less ProgressChangeMargin), and every row once per
// FullProgressInterval, so its cost follows the rate of change, not the
// fleet's size. This replica's own changes are applied to the cache at once.
//
// Concurrency: mu guards the maps and the snapshots inside them. It is
// never held across a database read or write: refreshes and loads read
// first and swap under the lock (a load that loses a race is dropped).
type cache struct {
	reg   state.RegistryStore
	ro    state.RolloutStore
	prog  state.ProgressStore
	clock *clock

	mu         sync.Mutex
	epoch      int64
	checkedAt  time.Time
	refreshing bool
	snapshots  map[string]*rollout.Snapshot // by rollout id
	revs       map[string]int64             // the rollout revision each snapshot is as of
	loads      singleflight.Group           // one load per rollout and revision at a time
	rollouts   map[string][]state.Rollout   // by product
	devices    map[string]state.Device      // by id
	cursors    map[string]progressCursor    // by rollout id
}

func newCache(reg state.RegistryStore, ro state.RolloutStore, prog state.ProgressStore, clk *clock) *cache {
	return &cache{reg: reg, ro: ro, prog: prog, clock: clk, snapshots: map[string]*rollout.Snapshot{}, revs: map[string]int64{},
		rollouts: map[string][]state.Rollout{}, devices: map[string]state.Device{}, cursors: map[string]progressCursor{}}
}

// refresh drops the cached configuration when the fleet epoch moved and
// re-reads rollout progress otherwise; at most every EpochCheckInterval,
// one refresh at a time, without holding mu while it reads.
func (c *cache) refresh(ctx context.Context) error {
	now := c.clock.Now()
	c.mu.Lock()
	if c.refreshing || now.Sub(c.checkedAt) < EpochCheckInterval {
		c.mu.Unlock()
		return nil
	}
	c.refreshing = true
	ids := make([]string, 0, len(c.snapshots))
	for id := range c.snapshots {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.refreshing = false
		c.mu.Unlock()
	}()
	e, err := c.reg.FleetEpoch(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if e != c.epoch {
		c.epoch, c.checkedAt = e, now
		c.snapshots = map[string]*rollout.Snapshot{}
		c.revs = map[string]int64{}
		c.rollouts = map[string][]state.Rollout{}
		c.devices = map[string]state.Device{}
		c.cursors = map[string]progressCursor{}
		c.mu.Unlock()
		return nil
	}
	cursors := map[string]progressCursor{}
	for _, id := range ids {
		cursors[id] = c.cursors[id]
	}
	c.mu.Unlock()
	// Progress written by other replicas: the rows changed since the last
	// read (less a margin for transactions still committing), and every
	// row once per FullProgressInterval.
	type read struct {
		full bool
		ps   []state.Progress
		cur  progressCursor
	}
	reads := map[string]read{}
	for _, id := range ids {
		cur := cursors[id]
		full := now.Sub(cur.full) >= FullProgressInterval
		since := cur.sinceMS - ProgressChangeMargin.Milliseconds()
		if full {
			since = 0
		}
		ps, dbNow, err := c.prog.ProgressChanged(ctx, id, since)
		if err != nil {
			return err
		}
		cur.sinceMS = dbNow
		if full {
			cur.full = now
		}
		reads[id] = read{full: full, ps: ps, cur: cur}
	}
	c.mu.Lock()
	for id, r := range reads {
		snap, ok := c.snapshots[id]
		if !ok {
			continue
		}
		if r.full {
			snap.ReplaceProgress(progressMap(r.ps))
		} else {
			for _, p := range r.ps {
				snap.SetProgress(p.DeviceID, p.State, p.Updated)
			}
		}
		c.cursors[id] = r.cur
	}
	c.checkedAt = now
	c.mu.Unlock()
	return nil
}

// progressCursor is where a snapshot's progress was last read: the
// database clock of the last read and when every row was last read.
type progressCursor struct {
	sinceMS int64
	full    time.Time
}

// forceRefresh makes the next refresh check the epoch at once.
func (c *cache) forceRefresh() {
	c.mu.Lock()
	c.checkedAt = time.Time{}
	c.mu.Unlock()
}

func progressMap(ps []state.Progress) map[string]*rollout.Progress {
	m := make(map[string]*rollout.Progress, len(ps))
	for _, p := range ps {
		m[p.DeviceID] = &rollout.Progress{DeviceID: p.DeviceID, Wave: p.Wave, State: p.State, Updated: p.Updated}
	}
	return m
}

// device returns a registered device, from the cache when current.
func (c *cache) device(ctx context.Context, id string) (state.Device, error) {
	if err := c.refresh(ctx); err != nil {
		return state.Device{}, err
	}
	c.mu.Lock()
	d, ok := c.devices[id]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := c.reg.Device(ctx, id)
	if err != nil {
		return d, err
	}
	c.mu.Lock()
	if newer, ok := c.devices[id]; ok && newer.LastCheckIn.After(d.LastCheckIn) {
		d = newer // a check-in on this replica got there first
	}
	c.devices[id] = d
	c.mu.Unlock()
	return d, nil
}

// dropDevice forgets a device (decommissioned) on this replica at once.
func (c *cache) dropDevice(id string) {
	c.mu.Lock()
	delete(c.devices, id)
	c.checkedAt = time.Time{}
	c.mu.Unlock()
}

// rolloutsOf returns a product's rollouts, cached.
func (c *cache) rolloutsOf(ctx context.Context, product string) ([]state.Rollout, error) {
	c.mu.Lock()
	rs, ok := c.rollouts[product]
	c.mu.Unlock()
	if ok {
		return rs, nil
	}
	rs, err := c.ro.Rollouts(ctx, product)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.rollouts[product] = rs
	c.mu.Unlock()
	return rs, nil
}

// activeSnapshots returns the decision state of a product's active
// rollouts, loading the missing ones.
func (c *cache) activeSnapshots(ctx context.Context, product string) ([]*rollout.Snapshot, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	rs, err := c.rolloutsOf(ctx, product)
	if err != nil {
		return nil, err
	}
	var out []*rollout.Snapshot
	for _, r := range rs {
		if r.State != string(rollout.Active) {
			continue
		}
		snap, err := c.snapshot(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

// snapshot returns the cached decision state of r, loading it when it is
// missing or older than r (by the rollout's revision; a cached state newer
// than a copy of r read earlier is kept). One load per rollout and revision
// runs at a time: concurrent check-ins wait for it instead of each reading
// every device.
func (c *cache) snapshot(ctx context.Context, r state.Rollout) (*rollout.Snapshot, error) {
	c.mu.Lock()
	snap, ok := c.snapshots[r.ID]
	fresh := ok && c.revs[r.ID] >= r.Revision
	c.mu.Unlock()
	if fresh {
		return snap, nil
	}
	v, err, _ := c.loads.Do(r.ID+"@"+strconv.FormatInt(r.Revision, 10), func() (any, error) {
		// Not the first caller's cancellation: others wait on this load.
		snap, cur, err := c.load(context.WithoutCancel(ctx), r)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if have, ok := c.snapshots[r.ID]; ok && c.revs[r.ID] >= r.Revision {
			return have, nil // a newer one arrived meanwhile
		}
		c.snapshots[r.ID], c.revs[r.ID], c.cursors[r.ID] = snap, r.Revision, cur
		return snap, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*rollout.Snapshot), nil
}

// put stores a snapshot this replica changed (after advancing it) as of
// the rollout revision it stored.
func (c *cache) put(snap *rollout.Snapshot, revision int64) {
	c.mu.Lock()
	c.snapshots[snap.Rollout.ID], c.revs[snap.Rollout.ID] = snap, revision
	c.mu.Unlock()
}

// forget drops a rollout's decision state, so the next decision reads
// approvals and deferrals afresh (other replicas see the change through
// the fleet epoch); product's rollout list too when it is known.
func (c *cache) forget(id, product string) {
	c.mu.Lock()
	delete(c.snapshots, id)
	delete(c.revs, id)
	if product != "" {
		delete(c.rollouts, product)
	}
	c.mu.Unlock()
}

// with runs fn on the cached snapshot under the lock (decisions that read
// and change it together).
func (c *cache) with(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
}

// load reads everything one rollout's decisions need.
func (c *cache) load(ctx context.Context, r state.Rollout) (*rollout.Snapshot, progressCursor, error) {
	var cur progressCursor
	var plan rollout.Plan
	if err := json.Unmarshal(r.Plan, &plan); err != nil {
		return nil, cur, fmt.Errorf("rollout %s plan: %w", r.ID, err)
	}
	snap := &rollout.Snapshot{
		Rollout: &rollout.Rollout{ID: r.ID, Plan: plan, Target: r.Target, State: rollout.State(r.State), CurrentWave: r.CurrentWave,
			WaveOpened: r.WaveOpened, HaltReason: r.HaltReason, Created: r.Created},
		Sites: map[string]*rollout.Site{}, Devices: map[string]rollout.Device{},
	}
	sites, err := c.reg.Sites(ctx)
	if err != nil {
		return nil, cur, err
	}
	for _, st := range sites {
		site, err := toSite(siteFromState(st))
		if err != nil {
			return nil, cur, err
		}
		snap.Sites[st.Name] = site
	}
	devs, err := c.reg.DevicesOf(ctx, plan.Product)
	if err != nil {
		return nil, cur, err
	}
	for _, d := range devs {
		if !d.Decommissioned {
			snap.Devices[d.ID] = toRolloutDevice(d)
		}
	}
	as, err := c.ro.Approvals(ctx, r.ID)
	if err != nil {
		return nil, cur, err
	}
	for _, a := range as {
		snap.Approvals = append(snap.Approvals, rollout.Approval{Wave: a.Wave, Site: a.Site, By: a.By, Comment: a.Comment, NotBefore: a.NotBefore, At: a.At, Revoked: a.Revoked})
	}
	ds, err := c.ro.Deferrals(ctx, r.ID)
	if err != nil {
		return nil, cur, err
	}
	for _, d := range ds {
		snap.Deferrals = append(snap.Deferrals, rollout.Deferral{Wave: d.Wave, Site: d.Site, Reason: d.Reason, Until: d.Until})
	}
	ps, dbNow, err := c.prog.ProgressChanged(ctx, r.ID, 0)
	if err != nil {
		return nil, cur, err
	}
	snap.Progress = progressMap(ps)
	return snap, progressCursor{sinceMS: dbNow, full: c.clock.Now()}, nil
}

func toRolloutDevice(d state.Device) rollout.Device {
	return rollout.Device{ID: d.ID, Product: d.Product, Hardware: d.Hardware, Site: d.Site, CareArea: d.CareArea, Tags: d.Tags, Installed: d.Installed}
}

func policyString(aa []string) string {
	if len(aa) == 0 {
		return ""
	}
	return "auto-approve:" + strings.Join(aa, ",")
}
