// Package engine is the agent's install state machine (docs/agent.md):
//
//	idle → downloading → verified → [deferred] → staging → staged →
//	switching → switched → committing → committed
//	                    ↘ rolling_back → rolled_back      (and → failed)
//
// Every transition is journaled (package journal) before its side effect
// and reported as an event (package events). Recover, called at start,
// continues from whatever phase the journal holds, so a crash or power cut
// at any step ends with one consistent slot active: the old release, or the
// new one once it has passed its health check.
//
// Safety rules: nothing is installed or restarted while the clinical-use
// interlock says busy (downloading is allowed); a switched slot that fails
// its health check, or does not come back healthy within MaxBootAttempts
// starts of the agent, is rolled back; a release that failed or rolled back
// is not tried again.
//
// Concurrency: an Engine is driven by one goroutine.
package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/failpoint"
	"github.com/vigil-ota/vigil/agent/internal/interlock"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Defaults, with their units.
const (
	DefaultHealthTimeout   = 60 * time.Second
	DefaultMaxBootAttempts = 3
	DefaultRestartTimeout  = 5 * time.Minute
	// MaxBadReleases bounds the list of releases not to try again.
	MaxBadReleases = 100
)

// Config is what the engine needs.
type Config struct {
	DeviceID    string
	Product     string
	Hardware    string
	DataDir     string
	Server      string // repository base URL (vigil-server or a mirror)
	TrustedRoot []byte
	Slots       slot.Backend
	// HealthCommand runs after a switch; exit 0 means healthy. Empty means
	// the new slot is healthy once it is active.
	HealthCommand string
	HealthTimeout time.Duration
	// RestartCommand restarts what runs from the slots after a switch (an
	// application, or the device: a reboot). Optional.
	RestartCommand  string
	Interlock       interlock.Interlock
	MaxBootAttempts int
	HTTP            *http.Client
	// Download bounds each target download (slow retrieval); zero fields
	// take tufclient's defaults.
	Download tufclient.Limits
	Log      *zap.Logger
	// Now is the clock (events, journal); nil means time.Now.
	Now func() time.Time
	// Health runs the health check of a switched slot; nil runs
	// HealthCommand with HealthTimeout.
	Health func(ctx context.Context, slot, version string) error
	// Failpoint is called at each named crash-injection point
	// (docs/agent.md); nil means failpoint.Hit (armed by the
	// VIGIL_AGENT_FAILPOINT variable). In-process tests pass a hook that
	// stops the engine there, as a crash would.
	Failpoint func(name string)
	// CheckIn, when set, asks the server which release to install (the
	// rollout's assignment); the agent still verifies it through TUF. Nil:
	// the agent takes the newest installable release itself.
	CheckIn func(ctx context.Context, in api.CheckIn) (*api.Assignment, error)
	// NoDeltas: always download full images and keep no base image
	// (delta.go); for devices without room for a second copy.
	NoDeltas bool
}

// Engine drives installs.
type Engine struct {
	cfg   Config
	st    journal.State
	queue *events.Queue
	// offered: stillOffered confirmed the release and nothing has waited
	// since (a deferral, a new process), so switching right after staging
	// needs no second refresh.
	offered bool
}

// New loads the journal.
func New(cfg Config) (*Engine, error) {
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.MaxBootAttempts == 0 {
		cfg.MaxBootAttempts = DefaultMaxBootAttempts
	}
	if cfg.HTTP == nil {
		cfg.HTTP = tufclient.NewHTTPClient()
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Failpoint == nil {
		cfg.Failpoint = failpoint.Hit
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	st, err := journal.Load(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	q, err := events.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, st: st, queue: q}, nil
}

// State returns the journaled state.
func (e *Engine) State() journal.State { return e.st }

// Queue is the event outbox.
func (e *Engine) Queue() *events.Queue { return e.queue }

// to journals a new phase (after mutate) and queues its event.
func (e *Engine) to(phase journal.Phase, reason string, mutate func(*journal.State)) error {
	next := e.st
	next.Phase = phase
	next.Reason = reason
	if mutate != nil {
		mutate(&next)
	}
	saved, err := journal.Save(e.cfg.DataDir, next)
	if err != nil {
		return fmt.Errorf("journal %s: %w", phase, err)
	}
	e.st = saved
	e.cfg.Log.Info("install state", zap.String("phase", string(phase)), zap.String("reason", reason), zap.String("target", targetOf(saved)))
	return e.emit(phase, reason, strconv.Itoa(saved.BootAttempts))
}

func targetOf(s journal.State) string {
	if s.Release == nil {
		return ""
	}
	return s.Release.Target
}

func (e *Engine) emit(state api.InstallState, reason, extra string) error {
	var target, version string
	if e.st.Release != nil {
		target, version = e.st.Release.Target, e.st.Release.Version
	}
	disc := strconv.FormatInt(e.st.Attempt, 10) + "/" + extra
	if state == journal.Deferred || state == journal.Downloading && reason != "" {
		disc += "/" + reason // a new deferral reason, or a fallback from a delta, is a new event
	}
	return e.queue.Add(api.DeviceEvent{
		ID: events.ID(e.cfg.DeviceID, target, string(state), disc), DeviceID: e.cfg.DeviceID,
		Target: target, Version: version, State: state, Reason: reason, Time: e.cfg.Now().UTC(),
	})
}

// InstalledVersion reads the version of the active slot.
func (e *Engine) InstalledVersion(ctx context.Context) (string, string, error) {
	active, err := e.cfg.Slots.Active(ctx)
	if err != nil {
		return "", "", err
	}
	rel, err := e.cfg.Slots.Installed(ctx, active)
	if err != nil {
		return active, "", fmt.Errorf("active slot %s: %w", active, err)
	}
	return active, rel.Version, nil
}

// Recover continues an install interrupted by a crash or restart. It
// counts a start in the switched phase as a boot attempt.
func (e *Engine) Recover(ctx context.Context) error {
	if e.st.Phase == journal.Committed {
		e.keepBase() // a crash between the commit and keeping its image
	}
	if e.st.Phase == journal.Switched {
		next := e.st
		next.BootAttempts++
		saved, err := journal.Save(e.cfg.DataDir, next)
		if err != nil {
			return err
		}
		e.st = saved
	}
	return e.advance(ctx)
}

// Check looks for a newer installable release and, if there is one, starts
// installing it. It also continues a pending install (download resumed,
// deferral retried).
func (e *Engine) Check(ctx context.Context) error {
	switch e.st.Phase {
	case journal.Idle, journal.Committed, journal.RolledBack, journal.Failed:
		if err := e.choose(ctx); err != nil {
			return err
		}
	}
	return e.advance(ctx)
}

func (e *Engine) tufConfig() tufclient.Config {
	mu, tu := tufclient.RepoURLs(e.cfg.Server)
	return tufclient.Config{MetadataURL: mu, TargetsURL: tu, Dir: filepath.Join(e.cfg.DataDir, "tuf"), BootstrapRoot: e.cfg.TrustedRoot}
}

// choose refreshes TUF metadata and picks the newest installable release
// that has not failed here before.
func (e *Engine) choose(ctx context.Context) error {
	active, installed, err := e.InstalledVersion(ctx)
	if err != nil {
		return err
	}
	tc, err := tufclient.Refresh(e.tufConfig())
	if err != nil {
		return err
	}
	dev := release.Device{Product: e.cfg.Product, Hardware: e.cfg.Hardware, InstalledVersion: installed}
	var assigned string
	if e.cfg.CheckIn != nil {
		a, err := e.cfg.CheckIn(ctx, api.CheckIn{Installed: installed, State: e.st.Phase, Slot: active})
		if err != nil {
			return fmt.Errorf("check-in: %w", err)
		}
		if a == nil {
			return nil // no assignment: nothing to do now
		}
		if cur, err := e.cfg.Slots.Installed(ctx, active); err == nil && cur.Target == a.Target {
			return nil // already running it; the server learns so from our events
		}
		assigned = a.Target
	}
	sel, err := Select(tc, dev, assigned, e.badList())
	if err != nil {
		return err
	}
	if r := sel.Refused; r != nil {
		return e.refuse(r.Target, r.Version, r.Check, r.Reason)
	}
	c := sel.Chosen
	if c == nil {
		return nil
	}
	rel := journal.Release{Target: c.Path, Version: c.Custom.Version, SHA256: hex.EncodeToString(c.Target.Hashes["sha256"]), Length: c.Target.Length,
		UnpackedLength: c.Custom.UnpackedLength}
	dl := e.deltaFor(ctx, tc, c, active)
	return e.to(journal.Downloading, "", func(s *journal.State) {
		s.Release = &rel
		s.Attempt++
		s.BootAttempts = 0
		s.Download, s.From, s.To = "", "", ""
		s.Delta = dl
	})
}

func (e *Engine) badList() []string { return e.st.Bad }

// refuse reports an assigned release the device will not install (its
// signed fields do not allow it here) as failed, naming the check.
func (e *Engine) refuse(target, version, check, reason string) error {
	if slices.Contains(e.badList(), target) {
		return nil
	}
	if version == "" {
		version = "unknown"
	}
	rel := journal.Release{Target: target, Version: version}
	return e.to(journal.Failed, "refused: "+check+": "+reason, func(s *journal.State) {
		s.Release = &rel
		s.Attempt++
		s.Bad = appendBad(s.Bad, target)
	})
}

func (e *Engine) downloadPath() string {
	r := e.st.Release
	return filepath.Join(e.cfg.DataDir, "downloads", r.SHA256+"."+filepath.Base(r.Target))
}

// advance runs the state machine until it waits (idle, deferred, a
// network error to retry later) or ends (committed, rolled back, failed).
func (e *Engine) advance(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch e.st.Phase {
		case journal.Idle, journal.Committed, journal.RolledBack, journal.Failed:
			return nil
		case journal.Downloading:
			err = e.download(ctx)
		case journal.Verified, journal.Deferred:
			var waiting bool
			if waiting, err = e.beforeInstall(ctx); err == nil && waiting {
				return nil
			}
		case journal.Staging:
			err = e.stage(ctx)
		case journal.Staged:
			var waiting bool
			if waiting, err = e.beforeSwitch(ctx); err == nil && waiting {
				return nil
			}
		case journal.Switching:
			err = e.switchSlot(ctx)
		case journal.Switched:
			var waiting bool
			if waiting, err = e.checkHealth(ctx); err == nil && waiting {
				return nil
			}
		case journal.Committing:
			err = e.commit(ctx)
		case journal.RollingBack:
			err = e.rollback(ctx)
		default:
			return fmt.Errorf("journal phase %q has no handler", e.st.Phase)
		}
		if err != nil {
			return err
		}
	}
}

func (e *Engine) fail(reason string) error {
	return e.to(journal.Failed, reason, func(s *journal.State) { s.Bad = appendBad(s.Bad, s.Release.Target) })
}

func appendBad(list []string, target string) []string {
	if slices.Contains(list, target) {
		return list
	}
	list = append(list, target)
	if len(list) > MaxBadReleases {
		list = list[len(list)-MaxBadReleases:]
	}
	return list
}

func (e *Engine) download(ctx context.Context) error {
	if e.st.Delta != nil {
		return e.rebuild(ctx)
	}
	r := e.st.Release
	h, err := hex.DecodeString(r.SHA256)
	if err != nil {
		return e.fail("journal holds a bad sha256")
	}
	tf := &metadata.TargetFiles{Path: r.Target, Length: r.Length, Hashes: metadata.Hashes{"sha256": h}}
	_, tu := tufclient.RepoURLs(e.cfg.Server)
	url := tufclient.ConsistentTargetURL(tu, r.Target, r.SHA256)
	hc := *e.cfg.HTTP
	hc.Transport = failpointTransport{base: e.cfg.HTTP.Transport, half: r.Length / 2, hit: e.cfg.Failpoint}
	res, err := tufclient.Download(ctx, &hc, url, tf, e.downloadPath(), e.cfg.Download)
	if err != nil {
		if tufclient.IsVerification(err) {
			return e.fail(err.Error())
		}
		return fmt.Errorf("download %s (will resume): %w", r.Target, err)
	}
	e.cfg.Log.Info("download verified", zap.String("target", r.Target), zap.Int64("bytes", res.Bytes), zap.Int64("resumed", res.Resumed))
	e.cfg.Failpoint("downloaded")
	return e.to(journal.Verified, "", func(s *journal.State) { s.Download = e.downloadPath() })
}

// beforeInstall asks the interlock; busy keeps the verified download and
// defers. It reports whether the engine must wait.
func (e *Engine) beforeInstall(ctx context.Context) (bool, error) {
	if busy, reason := e.cfg.Interlock.Busy(ctx); busy {
		if e.st.Phase == journal.Deferred && e.st.Reason == reason {
			return true, nil
		}
		return true, e.to(journal.Deferred, reason, nil)
	}
	if _, err := os.Stat(e.st.Download); err != nil {
		// The verified file vanished (disk cleaned): fetch it again.
		return false, e.to(journal.Downloading, "verified download missing; fetching again", nil)
	}
	if offered, err := e.stillOffered(ctx); err != nil || !offered {
		return err == nil, err
	}
	active, err := e.cfg.Slots.Active(ctx)
	if err != nil {
		return false, err
	}
	return false, e.to(journal.Staging, "", func(s *journal.State) { s.From, s.To = active, slot.Other(active) })
}

func (e *Engine) stage(ctx context.Context) error {
	e.cfg.Failpoint("staging")
	if err := e.cfg.Slots.Write(ctx, e.st.To, e.st.Download, *e.st.Release); err != nil {
		if errors.Is(err, slot.ErrActiveSlot) {
			return e.fail("the slot to install into is the active one")
		}
		return e.fail("staging into slot " + e.st.To + ": " + err.Error())
	}
	e.cfg.Failpoint("staged")
	return e.to(journal.Staged, "", nil)
}

// beforeSwitch asks the interlock again: a switch restarts what runs.
func (e *Engine) beforeSwitch(ctx context.Context) (bool, error) {
	if busy, reason := e.cfg.Interlock.Busy(ctx); busy {
		e.offered = false // the release is checked again when the wait ends
		if e.st.Reason != reason {
			e.st.Reason = reason
			if err := e.emit(journal.Deferred, reason, "staged"); err != nil {
				return true, err
			}
			saved, err := journal.Save(e.cfg.DataDir, e.st)
			if err != nil {
				return true, err
			}
			e.st = saved
		}
		return true, nil
	}
	if !e.offered {
		if offered, err := e.stillOffered(ctx); err != nil || !offered {
			return err == nil, err
		}
	}
	e.offered = false
	return false, e.to(journal.Switching, "", func(s *journal.State) { s.BootAttempts = 0 })
}

// ReasonRevoked is the failure reason of a release that left the signed
// product role (a revoke) between its download and its install or switch.
const ReasonRevoked = "revoked: the release is no longer in the signed product role"

// stillOffered re-reads the signed metadata before a step that changes
// what runs (staging; switching, unless it follows staging without a wait):
// a release revoked since it was chosen
// (the product role re-signed without it) is dropped, never installed. A
// device that cannot refresh keeps waiting (the error): it installs only
// what it has just confirmed is still signed. When the release is gone it
// fails the install (reported, never retried) and reports false.
func (e *Engine) stillOffered(ctx context.Context) (bool, error) {
	tc, err := tufclient.Refresh(e.tufConfig())
	if err != nil {
		return false, fmt.Errorf("re-checking %s before installing it (will retry): %w", e.st.Release.Target, err)
	}
	if tf, err := tc.TargetInfo(e.st.Release.Target); err == nil && hex.EncodeToString(tf.Hashes["sha256"]) == e.st.Release.SHA256 {
		e.offered = true
		return true, nil
	}
	e.cfg.Log.Warn("release revoked before it was installed; dropping it", zap.String("target", e.st.Release.Target), zap.String("phase", string(e.st.Phase)))
	return false, e.fail(ReasonRevoked)
}

func (e *Engine) restart(ctx context.Context) error {
	if e.cfg.RestartCommand == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultRestartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", e.cfg.RestartCommand)
	cmd.Env = append(os.Environ(), "VIGIL_SLOT="+e.st.To)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("restart command: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *Engine) switchSlot(ctx context.Context) error {
	if err := e.cfg.Slots.Switch(ctx, e.st.To); err != nil {
		return e.to(journal.RollingBack, "switch to slot "+e.st.To+" failed: "+err.Error(), nil)
	}
	e.cfg.Failpoint("switched-before-journal")
	if err := e.to(journal.Switched, "", func(s *journal.State) { s.BootAttempts = 1 }); err != nil {
		return err
	}
	e.cfg.Failpoint("switched")
	if err := e.restart(ctx); err != nil {
		return e.to(journal.RollingBack, err.Error(), nil)
	}
	return nil
}

// checkHealth runs the health check of a switched slot. It reports whether
// the engine must wait (the device has not yet booted the new slot).
func (e *Engine) checkHealth(ctx context.Context) (bool, error) {
	if e.st.BootAttempts > e.cfg.MaxBootAttempts {
		return false, e.to(journal.RollingBack, fmt.Sprintf("slot %s did not come up healthy within %d attempts", e.st.To, e.cfg.MaxBootAttempts), nil)
	}
	active, err := e.cfg.Slots.Active(ctx)
	if err != nil {
		return false, err
	}
	if active != e.st.To {
		if e.st.BootAttempts > 1 {
			// We restarted and the device still runs the old slot: the
			// bootloader fell back.
			return false, e.to(journal.RollingBack, fmt.Sprintf("the device booted slot %s, not the new slot %s", active, e.st.To), nil)
		}
		return true, nil // waiting for the reboot into the new slot
	}
	e.cfg.Failpoint("health-check")
	if err := e.runHealth(ctx); err != nil {
		return false, e.to(journal.RollingBack, "health check failed: "+err.Error(), nil)
	}
	e.cfg.Failpoint("healthy")
	return false, e.to(journal.Committing, "", nil)
}

func (e *Engine) runHealth(ctx context.Context) error {
	if e.cfg.Health != nil {
		return e.cfg.Health(ctx, e.st.To, e.st.Release.Version)
	}
	if e.cfg.HealthCommand == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HealthTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", e.cfg.HealthCommand)
	cmd.Env = append(os.Environ(), "VIGIL_SLOT="+e.st.To, "VIGIL_VERSION="+e.st.Release.Version)
	out, err := cmd.CombinedOutput()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %s", e.cfg.HealthTimeout)
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 200 {
			msg = msg[len(msg)-200:]
		}
		return fmt.Errorf("%v: %s", err, msg)
	}
	return nil
}

func (e *Engine) commit(ctx context.Context) error {
	if err := e.cfg.Slots.MarkGood(ctx, e.st.To); err != nil {
		return err
	}
	e.cfg.Failpoint("marked-good")
	if err := e.to(journal.Committed, "", nil); err != nil {
		return err
	}
	e.keepBase()
	os.Remove(e.st.Download)
	return nil
}

func (e *Engine) rollback(ctx context.Context) error {
	e.cfg.Failpoint("rolling-back")
	if err := e.cfg.Slots.Switch(ctx, e.st.From); err != nil {
		return fmt.Errorf("rollback to slot %s: %w", e.st.From, err)
	}
	target := e.st.To
	e.st.To = e.st.From // restart what runs from the old slot
	err := e.restart(ctx)
	e.st.To = target
	if err != nil {
		e.cfg.Log.Warn("restart after rollback failed", zap.Error(err))
	}
	if err := e.cfg.Slots.MarkGood(ctx, e.st.From); err != nil {
		return err
	}
	if err := e.to(journal.RolledBack, e.st.Reason, func(s *journal.State) { s.Bad = appendBad(s.Bad, s.Release.Target) }); err != nil {
		return err
	}
	os.Remove(e.st.Download)
	return nil
}

// failpointTransport fires the "download-mid" failpoint once half of a
// target has arrived (crash-injection tests only; a no-op otherwise).
type failpointTransport struct {
	base http.RoundTripper
	half int64
	hit  func(string)
}

func (t failpointTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err == nil {
		resp.Body = &midReader{ReadCloser: resp.Body, left: t.half, hit: t.hit}
	}
	return resp, err
}

type midReader struct {
	io.ReadCloser
	left int64
	hit  func(string)
}

func (m *midReader) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	m.left -= int64(n)
	if m.left <= 0 {
		m.hit("download-mid")
	}
	return n, err
}
