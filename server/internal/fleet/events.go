package fleet

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Event limits, with their units.
const (
	MaxEventsPerBatch = 100
	MaxReasonBytes    = 1024
	MaxFieldBytes     = 256
	// MaxClockSkew bounds how far in the future an event's time may be.
	MaxClockSkew = 24 * time.Hour
	// MaxEventAge bounds how far in the past it may be (a device offline
	// for months still delivers its outbox; year 1 is a broken clock).
	MaxEventAge = 2 * 365 * 24 * time.Hour
	// MaxListedEvents bounds one listing.
	MaxListedEvents = 1000
)

var eventID = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// Events takes in the install events agents report (an outbox on each
// device delivers them, at least once) and lists them (the package doc has
// its rules).
type Events struct {
	events   state.EventStore
	checkIns *CheckIns
	cache    *cache
	rollouts *Rollouts
	clock    *clock
}

// Ingest validates and stores a batch from an authenticated device, and
// moves the device's progress in the rollouts its events are about; it
// returns how many events were new.
func (e *Events) Ingest(ctx context.Context, dev state.Device, b api.EventBatch) (api.EventBatchResponse, error) {
	if len(b.Events) == 0 {
		return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "the batch holds no events")
	}
	if len(b.Events) > MaxEventsPerBatch {
		return api.EventBatchResponse{}, apperr.New(apperr.TooLarge, "%d events in one batch; the limit is %d", len(b.Events), MaxEventsPerBatch)
	}
	now := e.clock.Now()
	evs := make([]state.DeviceEvent, 0, len(b.Events))
	for i, ev := range b.Events {
		switch {
		case !eventID.MatchString(ev.ID):
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: id %q is not 16-64 lower-case hex digits", i, ev.ID)
		case ev.DeviceID != dev.ID:
			return api.EventBatchResponse{}, apperr.New(apperr.Forbidden, "event %d is about device %q; a device reports only for itself", i, ev.DeviceID)
		case !ev.State.Reported():
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: state %q is unknown", i, ev.State)
		case len(ev.Reason) > MaxReasonBytes || len(ev.Target) > MaxFieldBytes || len(ev.Version) > MaxFieldBytes:
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: a field exceeds its limit", i)
		case ev.Time.IsZero() || ev.Time.After(now.Add(MaxClockSkew)) || ev.Time.Before(now.Add(-MaxEventAge)):
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: time %s is missing, in the future or more than %s ago", i, ev.Time.Format(time.RFC3339), MaxEventAge)
		}
		if err := input.Text(fmt.Sprintf("event %d: reason", i), ev.Reason, MaxReasonBytes); err != nil {
			return api.EventBatchResponse{}, err
		}
		evs = append(evs, state.DeviceEvent{ID: ev.ID, DeviceID: ev.DeviceID, Target: ev.Target, Version: ev.Version, State: ev.State, Reason: ev.Reason, Time: ev.Time.UTC()})
	}
	moves, err := e.progressMoves(ctx, dev, evs)
	if err != nil {
		return api.EventBatchResponse{}, err
	}
	n, moved, err := e.events.IngestDeviceEvents(ctx, evs, moves)
	if err != nil {
		return api.EventBatchResponse{}, err
	}
	if err := e.applyMoves(ctx, moves, moved); err != nil {
		return api.EventBatchResponse{}, err
	}
	e.recordCommit(dev, evs)
	return api.EventBatchResponse{Accepted: n, Duplicate: len(evs) - n}, nil
}

// recordCommit records the version of the newest committed event as the
// device's installed version, as of the event's time (so an older
// check-in cannot move it back), written with the buffered check-ins:
// exposure reports and fix clocks see a patched device within
// LastSeenFlushInterval of its commit, even before its next check-in.
func (e *Events) recordCommit(dev state.Device, evs []state.DeviceEvent) {
	var last *state.DeviceEvent
	for i := range evs {
		ev := &evs[i]
		if ev.State == api.StateCommitted && release.ValidateVersion(ev.Version) == nil && (last == nil || ev.Time.After(last.Time)) {
			last = ev
		}
	}
	if last != nil && e.checkIns != nil {
		e.checkIns.noteInstalled(dev, last.Version, last.Time, e.clock.Now())
	}
}

// progressMoves works out, for each rollout of the device's product whose
// target the events are about, the state they move the device to: the
// first final state among them, else the last one (a final state is never
// left; the store also keeps a final row as it is). A device without an
// assignment in a rollout is not moved (the store finds no row).
func (e *Events) progressMoves(ctx context.Context, dev state.Device, evs []state.DeviceEvent) ([]state.ProgressMove, error) {
	rs, err := e.cache.rolloutsOf(ctx, dev.Product)
	if err != nil {
		return nil, err
	}
	var moves []state.ProgressMove
	for _, r := range rs {
		var m *state.ProgressMove
		for _, ev := range evs {
			if ev.Target != r.Target || ev.State == api.StateIdle {
				continue
			}
			if m == nil {
				m = &state.ProgressMove{RolloutID: r.ID, DeviceID: dev.ID}
			} else if m.State.Final() {
				break
			}
			m.State, m.Updated = ev.State, ev.Time
		}
		if m != nil {
			moves = append(moves, *m)
		}
	}
	return moves, nil
}

// applyMoves shows the moves the store made in this replica's cached
// decisions at once, and applies the rollout rules where an attempt
// finished (only finished attempts move success and halt).
func (e *Events) applyMoves(ctx context.Context, moves []state.ProgressMove, moved []bool) error {
	for i, m := range moves {
		if !moved[i] {
			continue
		}
		e.cache.with(func() {
			if snap, ok := e.cache.snapshots[m.RolloutID]; ok {
				snap.SetProgress(m.DeviceID, m.State, m.Updated)
			}
		})
		if m.State.Final() {
			// Read the rollout afresh: a copy cached before another
			// request opened a wave would reload the decision state.
			if err := e.rollouts.advance(ctx, m.RolloutID); err != nil {
				return err
			}
		}
	}
	return nil
}

// List lists a device's events, oldest first. A site-scoped operator gets
// one answer for "no such device" and "not at your sites", so a site's IT
// cannot learn which device ids exist elsewhere.
func (e *Events) List(ctx context.Context, device string, limit int) ([]api.DeviceEvent, error) {
	if !deviceID.MatchString(device) {
		return nil, apperr.New(apperr.Invalid, "device id %q is not a device id", device)
	}
	if p, ok := operator.From(ctx); ok && p.SiteScoped() {
		d, err := e.cache.reg.Device(ctx, device)
		if (err != nil && apperr.Is(err, apperr.NotFound)) || (err == nil && !p.CanSite(d.Site)) {
			return nil, apperr.New(apperr.NotFound, "device %q is not registered at your sites", device)
		}
		if err != nil {
			return nil, err
		}
	}
	if limit <= 0 || limit > MaxListedEvents {
		limit = MaxListedEvents
	}
	evs, err := e.events.DeviceEvents(ctx, device, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.DeviceEvent, 0, len(evs))
	for _, ev := range evs {
		out = append(out, api.DeviceEvent{ID: ev.ID, DeviceID: ev.DeviceID, Target: ev.Target, Version: ev.Version, State: ev.State, Reason: ev.Reason, Time: ev.Time})
	}
	return out, nil
}
