// Package fleet is the server's view of devices and rollouts. It has five
// parts, each with its own rules, built on the per-replica cache (cache.go)
// and the pure rollout rules (package rollout):
//
//   - Registry (registry.go): hospital sites and registered devices. Every
//     input is validated and bounded before it is stored; registration is
//     all or none; decommissioning revokes a device's key at once on this
//     replica and within EpochCheckInterval on the others.
//   - DeviceAuth (auth.go, session.go): a device request is admitted only
//     when the registered, not decommissioned device's ed25519 key signed
//     its method, path, timestamp (within MaxRequestSkew), nonce and body,
//     or when it carries a MAC over the same fields under a session that
//     such a signed request opened (at most SessionLifetime ago, for the
//     key still registered); requests that change state also spend their
//     nonce (replay protection). The headers are checked before the body
//     is read.
//   - CheckIns (checkin.go): at most one assignment per answer, decided on
//     the cached rollout state; a new assignment is recorded with
//     insert-if-absent so caps hold across replicas; installed versions and
//     last-seen times are buffered and written in batches, and a check-in
//     signed no later than the newest one seen never moves the recorded
//     version back. No lock is held across a database write.
//   - Events (events.go): stores a device's own, well-formed, bounded events
//     once each (ids are stable), and moves the device's progress only in
//     rollouts that assigned it; a finished attempt applies the rules.
//   - Rollouts (rollouts.go): create, status, pause/resume/abort, approvals,
//     deferrals, emergency halts, and the automatic rules (halt on failures,
//     open the next wave), applied with the rollout's revision so two
//     replicas never both apply a change. Every operator action is audited.
//
// Threat model: devices and operators are untrusted input; site-scoped
// operators (hospital IT) see and act on their own sites only, and learn
// nothing about devices elsewhere.
package fleet

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Intervals and limits, with their units.
const (
	// EpochCheckInterval bounds how stale a replica's cached rollout state
	// may be: at most this long after a change elsewhere.
	EpochCheckInterval = time.Second
	// ProgressChangeMargin: a replica re-reads progress rows changed this
	// long before its last read too, for transactions that were still
	// committing (a write's time is taken before its commit).
	ProgressChangeMargin = 5 * time.Second
	// FullProgressInterval: every progress row of an active rollout is
	// re-read this often, whatever the change times say.
	FullProgressInterval = time.Minute
	// LastSeenFlushInterval: buffered check-ins are written this often.
	LastSeenFlushInterval = 10 * time.Second
)

// Targets resolves a release to its target path (the TUF repository).
type Targets interface {
	ReleaseTarget(ctx context.Context, product, version string) (target, severity string, err error)
	// ReleaseDeltas maps installed versions to the delta target of the
	// version that applies to them.
	ReleaseDeltas(ctx context.Context, product, version string) (map[string]string, error)
}

// Stores are the state areas the fleet uses, each given only to the parts
// that own it.
type Stores struct {
	Registry state.RegistryStore
	Nonces   state.NonceStore
	Secrets  state.SecretStore
	Served   state.ServedStore
	Rollouts state.RolloutStore
	Progress state.ProgressStore
	Events   state.EventStore
	Audit    audit.Recorder
}

// Fleet is the five parts, sharing one per-replica cache.
type Fleet struct {
	Registry *Registry
	Auth     *DeviceAuth
	CheckIns *CheckIns
	Events   *Events
	Rollouts *Rollouts

	cache *cache
	clock *clock
}

// clock is the parts' shared, replaceable time source.
type clock struct{ now func() time.Time }

func (c *clock) Now() time.Time { return c.now() }

// New builds the fleet. targets resolves releases (nil: rollouts cannot be
// created); log may be nil.
func New(st Stores, targets Targets, log *zap.Logger) *Fleet {
	if log == nil {
		log = zap.NewNop()
	}
	clk := &clock{now: time.Now}
	rec := recorder{st.Audit, log}
	c := newCache(st.Registry, st.Rollouts, st.Progress, clk)
	ro := &Rollouts{ro: st.Rollouts, prog: st.Progress, reg: st.Registry, cache: c, targets: targets, served: st.Served, rec: rec, log: log, clock: clk}
	ci := &CheckIns{cache: c, prog: st.Progress, reg: st.Registry, clock: clk, seen: map[string]state.Touch{}, claiming: map[[2]string]bool{},
		deltas: &deltaNames{targets: targets, clock: clk, m: map[[2]string]deltaEntry{}}}
	return &Fleet{
		Registry: &Registry{reg: st.Registry, events: st.Events, cache: c, rec: rec, clock: clk},
		Auth:     &DeviceAuth{cache: c, nonces: st.Nonces, clock: clk, tickets: &tickets{store: st.Secrets}},
		CheckIns: ci,
		Events:   &Events{events: st.Events, checkIns: ci, cache: c, rollouts: ro, clock: clk},
		Rollouts: ro,
		cache:    c,
		clock:    clk,
	}
}

// SetClock replaces the clock of every part (tests, simulations).
func (f *Fleet) SetClock(now func() time.Time) { f.clock.now = now }

// recorder writes audit entries; a failure is logged, not returned, since
// the action itself already happened.
type recorder struct {
	r   audit.Recorder
	log *zap.Logger
}

func (r recorder) record(ctx context.Context, action, subject string, details any) {
	if r.r == nil {
		return
	}
	if _, err := audit.Record(ctx, r.r, action, subject, details); err != nil {
		r.log.Error("audit entry not written", zap.String("action", action), zap.Error(err))
	}
}

// newID makes a rollout id.
func newID() string { return "ro-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] }
