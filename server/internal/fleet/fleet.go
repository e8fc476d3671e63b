// Package fleet is the server's view of devices. So far it takes in the
// install events agents report (an outbox on each device delivers them, at
// least once) and lists them; the fleet issue adds the registry, device
// authentication and rollouts on top.
//
// Threat model (for now): events are not yet authenticated — device keys
// and request signing arrive with the fleet registry — so ingest only
// stores well-formed, bounded records and nothing acts on them yet.
package fleet

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Limits, with their units.
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

// States an agent reports (journal phases).
var states = map[string]bool{
	"idle": true, "downloading": true, "verified": true, "deferred": true, "staging": true, "staged": true,
	"switching": true, "switched": true, "committing": true, "committed": true, "rolling_back": true,
	"rolled_back": true, "failed": true,
}

var (
	eventID  = regexp.MustCompile(`^[0-9a-f]{16,64}$`)
	deviceID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
)

// Ingest validates and stores a batch from an authenticated device, and
// moves the device's progress in the rollouts its events are about; it
// returns how many events were new.
func (s *Service) Ingest(ctx context.Context, dev state.Device, b api.EventBatch) (api.EventBatchResponse, error) {
	if len(b.Events) == 0 {
		return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "the batch holds no events")
	}
	if len(b.Events) > MaxEventsPerBatch {
		return api.EventBatchResponse{}, apperr.New(apperr.TooLarge, "%d events in one batch; the limit is %d", len(b.Events), MaxEventsPerBatch)
	}
	evs := make([]state.DeviceEvent, 0, len(b.Events))
	for i, e := range b.Events {
		switch {
		case !eventID.MatchString(e.ID):
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: id %q is not 16-64 lower-case hex digits", i, e.ID)
		case e.DeviceID != dev.ID:
			return api.EventBatchResponse{}, apperr.New(apperr.Forbidden, "event %d is about device %q; a device reports only for itself", i, e.DeviceID)
		case !states[e.State]:
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: state %q is unknown", i, e.State)
		case len(e.Reason) > MaxReasonBytes || len(e.Target) > MaxFieldBytes || len(e.Version) > MaxFieldBytes:
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: a field exceeds its limit", i)
		case e.Time.IsZero() || e.Time.After(s.now().Add(MaxClockSkew)) || e.Time.Before(s.now().Add(-MaxEventAge)):
			return api.EventBatchResponse{}, apperr.New(apperr.Invalid, "event %d: time %s is missing, in the future or more than %s ago", i, e.Time.Format(time.RFC3339), MaxEventAge)
		}
		if err := input.Text(fmt.Sprintf("event %d: reason", i), e.Reason, MaxReasonBytes); err != nil {
			return api.EventBatchResponse{}, err
		}
		evs = append(evs, state.DeviceEvent{ID: e.ID, DeviceID: e.DeviceID, Target: e.Target, Version: e.Version, State: e.State, Reason: e.Reason, Time: e.Time.UTC()})
	}
	n, err := s.st.AddDeviceEvents(ctx, evs)
	if err != nil {
		return api.EventBatchResponse{}, err
	}
	if err := s.applyProgress(ctx, dev, evs); err != nil {
		return api.EventBatchResponse{}, err
	}
	return api.EventBatchResponse{Accepted: n, Duplicate: len(evs) - n}, nil
}

// Events lists a device's events, oldest first.
func (s *Service) Events(ctx context.Context, device string, limit int) ([]api.DeviceEvent, error) {
	if !deviceID.MatchString(device) {
		return nil, apperr.New(apperr.Invalid, "device id %q is not a device id", device)
	}
	if p, ok := operator.From(ctx); ok && p.SiteScoped() {
		// One answer for "no such device" and "not at your sites", so a
		// site's IT cannot learn which device ids exist elsewhere.
		d, err := s.st.Device(ctx, device)
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
	evs, err := s.st.DeviceEvents(ctx, device, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.DeviceEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, api.DeviceEvent{ID: e.ID, DeviceID: e.DeviceID, Target: e.Target, Version: e.Version, State: e.State, Reason: e.Reason, Time: e.Time})
	}
	return out, nil
}
