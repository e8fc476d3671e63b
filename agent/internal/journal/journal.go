// Package journal keeps the agent's install state machine on disk, so that
// a crash or power cut at any step restarts into a known state.
//
// Rules: the journal is written before the side effect it announces
// ("staging into b" before a byte goes into slot b; "switching to b" before
// the switch). Each write goes to a temporary file, is fsynced, renamed over
// journal.json, and the directory is fsynced: after a crash the file holds
// either the old state or the new one, never a mix. A journal that does not
// parse is an error the agent reports; it never guesses.
//
// Concurrency: one agent process owns a data directory (see Lock).
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/atomicfile"
)

// Phase is a state of the install state machine (docs/agent.md): the
// install states of the wire contract (api.InstallState), one type for the
// journal, the events and the server.
type Phase = api.InstallState

// Phases.
const (
	Idle        = api.StateIdle
	Downloading = api.StateDownloading
	Verified    = api.StateVerified
	Deferred    = api.StateDeferred
	Staging     = api.StateStaging
	Staged      = api.StateStaged
	Switching   = api.StateSwitching
	Switched    = api.StateSwitched
	Committing  = api.StateCommitting
	Committed   = api.StateCommitted
	RollingBack = api.StateRollingBack
	RolledBack  = api.StateRolledBack
	Failed      = api.StateFailed
)

// Release is the release an install is about, as the signed metadata says.
type Release struct {
	Target  string `json:"target"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Length  int64  `json:"length"`
	// UnpackedLength is the signed bound on what the image unpacks to
	// (custom.unpacked_length; 0 when the release does not sign one).
	UnpackedLength int64 `json:"unpacked_length,omitempty"`
}

// Delta is a signed delta target and the installed image it applies to.
type Delta struct {
	Target     string `json:"target"`
	SHA256     string `json:"sha256"`
	Length     int64  `json:"length"`
	BaseSHA256 string `json:"base_sha256"`
	BaseLength int64  `json:"base_length"`
}

// State is the journal's content.
type State struct {
	Phase   Phase    `json:"phase"`
	Release *Release `json:"release,omitempty"`
	// Download is the verified image's path (from Verified on).
	Download string `json:"download,omitempty"`
	// Delta, while Downloading, is the signed delta to rebuild the image
	// from instead of downloading it whole (nil: the full image).
	Delta *Delta `json:"delta,omitempty"`
	// From and To are the slots: the one that ran before the install and
	// the one the install goes into.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// BootAttempts counts starts of the agent while Switched: the
	// reboot-loop guard.
	BootAttempts int `json:"boot_attempts,omitempty"`
	// Attempt numbers install attempts; event ids derive from it.
	Attempt int64 `json:"attempt"`
	// Bad lists releases that failed or rolled back here: never tried again.
	Bad []string `json:"bad,omitempty"`
	// Reason says why the last deferral, rollback or failure happened.
	Reason string `json:"reason,omitempty"`
	// Seq increases with every write.
	Seq       int64     `json:"seq"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks that the state is one the agent can act on.
func (s *State) Validate() error {
	if !s.Phase.Reported() {
		return fmt.Errorf("unknown phase %q", s.Phase)
	}
	needsRelease := s.Phase != Idle
	if needsRelease && (s.Release == nil || s.Release.Target == "" || s.Release.Version == "") {
		return fmt.Errorf("phase %s without a release", s.Phase)
	}
	switch s.Phase {
	case Staging, Staged, Switching, Switched, Committing, RollingBack:
		if s.From == "" || s.To == "" || s.From == s.To {
			return fmt.Errorf("phase %s needs two different slots, have from=%q to=%q", s.Phase, s.From, s.To)
		}
	}
	return nil
}

// FileName is the journal's name in the data directory.
const FileName = "journal.json"

// ErrCorrupt marks a journal that exists but cannot be used.
var ErrCorrupt = errors.New("journal is corrupt")

// Load reads the journal; a missing journal is a fresh Idle state.
func Load(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Phase: Idle}, nil
	}
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err := s.Validate(); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return s, nil
}

// Save writes s durably (temp file, fsync, rename, fsync dir) and returns
// the state as written (Seq and UpdatedAt set).
func Save(dir string, s State) (State, error) {
	if err := s.Validate(); err != nil {
		return s, err
	}
	s.Seq++
	s.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return s, err
	}
	if err := WriteFileDurable(filepath.Join(dir, FileName), b, 0o600); err != nil {
		return s, err
	}
	return s, nil
}

// WriteFileDurable replaces path with data durably (see atomicfile).
func WriteFileDurable(path string, data []byte, perm fs.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// SyncDir fsyncs a directory (see atomicfile).
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }

// Lock takes an exclusive lock on the data directory, so two agents never
// drive one device. The lock lasts until the process exits.
func Lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another vigil-agent holds %s: %w", dir, err)
	}
	return f, nil
}
