package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// CheckIns answers devices' check-ins (the package doc has its rules).
//
// Concurrency: the decision and the reservation of a new assignment happen
// under the cache's lock, on the cached snapshot (so two check-ins on this
// replica never both take the last place under a cap); the database claim
// (state.ProgressStore.ClaimAssignment, which counts the site's and care
// area's unfinished assignments across all replicas) happens after the lock
// is released, and a refused claim takes the reservation back. Until the
// claim is decided, another check-in of the same device gets no answer
// (never one the database may refuse). seenMu guards the buffer of
// check-ins to write.
type CheckIns struct {
	cache *cache
	prog  state.ProgressStore
	reg   state.RegistryStore
	clock *clock

	seenMu sync.Mutex
	seen   map[string]state.Touch // check-ins not yet written

	// claiming holds the (rollout, device) places being claimed in the
	// database now; guarded by the cache's lock.
	claiming map[[2]string]bool
	// deltas names the delta of an assignment (deltaNames).
	deltas *deltaNames
}

// CheckIn answers a device: at most one assignment. It writes only when it
// hands out a new assignment; the installed version and last-seen time are
// buffered and written in batches (FlushLastSeen). signedAt is the time the
// device signed the request: a check-in signed no later than the newest one
// seen (a replay within the skew window) does not change the recorded
// installed version.
func (c *CheckIns) CheckIn(ctx context.Context, dev Authenticated, in api.CheckIn) (*api.Assignment, error) {
	now := c.clock.Now()
	if in.Installed != "" && release.ValidateVersion(in.Installed) != nil {
		return nil, apperr.New(apperr.Invalid, "installed_version %q is not semver", in.Installed)
	}
	d := c.observe(dev, in, now)
	snaps, err := c.cache.activeSnapshots(ctx, d.Product)
	if err != nil {
		return nil, err
	}
	rd := toRolloutDevice(d)
	for _, snap := range snaps {
		var a *rollout.Assignment
		reserved, wave := false, 0
		var claim state.Claim
		key := [2]string{snap.Rollout.ID, d.ID}
		c.cache.with(func() {
			a, _ = snap.Decide(now, rd)
			if a != nil && c.claiming[key] {
				// Another check-in of this device is claiming its place
				// right now: no answer until the database has decided.
				a = nil
			}
			if a != nil && snap.Progress[d.ID] == nil {
				c.claiming[key] = true
				snap.SetProgress(d.ID, rollout.Assigned, now) // reserve the place under the caps
				reserved, wave = true, snap.WaveOfDevice(d.ID)
				claim = state.Claim{Site: d.Site, CareArea: d.CareArea}
				if site := snap.Sites[d.Site]; site != nil {
					claim.SiteCap, claim.AreaCap = site.SiteCap, site.CareAreaCap
				}
			}
		})
		if a == nil {
			continue
		}
		if reserved {
			// The cache decided on this replica's view; the database
			// decides across replicas (the caps hold exactly).
			res, err := c.prog.ClaimAssignment(ctx, state.Progress{RolloutID: snap.Rollout.ID, DeviceID: d.ID, Wave: wave, State: rollout.Assigned, Updated: now}, claim)
			refused := err != nil || res == state.SiteFull || res == state.CareAreaFull
			c.cache.with(func() {
				delete(c.claiming, key)
				if refused {
					snap.Unassign(d.ID)
				}
			})
			if err != nil {
				return nil, err
			}
			// Either way this replica's view is behind the database's: the
			// next check-in re-reads the progress rows changed since the
			// last read (not the whole rollout: at a million devices a
			// reload takes seconds).
			switch res {
			case state.AlreadyAssigned:
				// Another replica assigned it first: its answer stands.
				c.cache.forceRefresh()
			case state.SiteFull, state.CareAreaFull:
				// Other replicas filled the slots this replica saw free:
				// no assignment now.
				c.cache.forceRefresh()
				continue
			}
		}
		return &api.Assignment{RolloutID: a.RolloutID, Target: a.Target, Version: a.Version, Wave: a.Wave, NotBefore: a.NotBefore, WindowEnd: a.WindowEnd,
			Delta: c.deltas.name(ctx, d.Product, a.Version, d.Installed)}, nil
	}
	return nil, nil
}

// observe records what the check-in says about the device (unless it is
// older than the newest one seen) and returns the device to decide for.
func (c *CheckIns) observe(dev Authenticated, in api.CheckIn, now time.Time) state.Device {
	d := dev.Device
	c.seenMu.Lock()
	newest := d.LastCheckIn
	if t, ok := c.seen[d.ID]; ok && t.SignedAt.After(newest) {
		newest, d.Installed = t.SignedAt, t.Installed
	}
	fresh := in.Installed != "" && dev.SignedAt.After(newest)
	if fresh {
		d.Installed, d.LastCheckIn = in.Installed, dev.SignedAt
		c.seen[d.ID] = state.Touch{DeviceID: d.ID, Installed: in.Installed, Seen: now, SignedAt: dev.SignedAt}
	}
	c.seenMu.Unlock()
	if fresh {
		c.cache.with(func() {
			if cd, ok := c.cache.devices[d.ID]; ok && dev.SignedAt.After(cd.LastCheckIn) {
				cd.Installed, cd.LastCheckIn = in.Installed, dev.SignedAt
				c.cache.devices[d.ID] = cd
			}
		})
	}
	return d // a replay: the device as it last really said
}

// noteInstalled buffers a device's installed version as of signedAt (a
// committed event), unless something newer is known; it is written with
// the check-ins.
func (c *CheckIns) noteInstalled(d state.Device, version string, signedAt, now time.Time) {
	c.seenMu.Lock()
	newest := d.LastCheckIn
	if t, ok := c.seen[d.ID]; ok && t.SignedAt.After(newest) {
		newest = t.SignedAt
	}
	fresh := signedAt.After(newest)
	if fresh {
		c.seen[d.ID] = state.Touch{DeviceID: d.ID, Installed: version, Seen: now, SignedAt: signedAt}
	}
	c.seenMu.Unlock()
	if fresh {
		c.cache.with(func() {
			if cd, ok := c.cache.devices[d.ID]; ok && signedAt.After(cd.LastCheckIn) {
				cd.Installed, cd.LastCheckIn = version, signedAt
				c.cache.devices[d.ID] = cd
			}
		})
	}
}

// FlushLastSeen writes buffered check-ins (installed version, last seen)
// in one transaction; a failed write keeps them for the next flush.
func (c *CheckIns) FlushLastSeen(ctx context.Context) error {
	c.seenMu.Lock()
	batch := make([]state.Touch, 0, len(c.seen))
	for _, t := range c.seen {
		batch = append(batch, t)
	}
	c.seen = map[string]state.Touch{}
	c.seenMu.Unlock()
	err := c.reg.TouchDevices(ctx, batch)
	if err != nil {
		// The database is away (a restart, a failover): keep the batch for
		// the next flush, unless a newer check-in of a device came since.
		c.seenMu.Lock()
		for _, t := range batch {
			if cur, ok := c.seen[t.DeviceID]; !ok || t.SignedAt.After(cur.SignedAt) {
				c.seen[t.DeviceID] = t
			}
		}
		c.seenMu.Unlock()
	}
	return err
}

// RunFlusher writes buffered check-ins every LastSeenFlushInterval until
// ctx ends, then once more. Every replica runs it (each has its own buffer).
func (c *CheckIns) RunFlusher(ctx context.Context) {
	t := time.NewTicker(LastSeenFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.FlushLastSeen(context.WithoutCancel(ctx))
			return
		case <-t.C:
			c.FlushLastSeen(ctx)
		}
	}
}

// DeltaNamesTTL is how long a replica keeps a release's delta names before
// it reads them again (a delta published after the rollout started is
// named within this time).
const DeltaNamesTTL = time.Minute

// deltaNames caches, per (product, version), the delta target for each
// installed version; nil targets (tests) name none.
type deltaNames struct {
	targets Targets
	clock   *clock
	mu      sync.Mutex
	m       map[[2]string]deltaEntry
}

type deltaEntry struct {
	byBase map[string]string
	at     time.Time
}

func (d *deltaNames) name(ctx context.Context, product, version, installed string) string {
	if d == nil || d.targets == nil || installed == "" {
		return ""
	}
	k := [2]string{product, version}
	now := d.clock.Now()
	d.mu.Lock()
	e, ok := d.m[k]
	d.mu.Unlock()
	if !ok || now.Sub(e.at) > DeltaNamesTTL {
		m, err := d.targets.ReleaseDeltas(ctx, product, version)
		if err != nil {
			return e.byBase[installed] // keep the last answer while the repository is unreadable
		}
		e = deltaEntry{byBase: m, at: now}
		d.mu.Lock()
		d.m[k] = e
		d.mu.Unlock()
	}
	return e.byBase[installed]
}
