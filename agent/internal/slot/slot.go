// Package slot is the A/B slot boundary of the agent: where a verified
// image is written, which slot runs, and how the agent switches between
// them. Two backends implement it and pass one conformance suite
// (slottest): Dir (two directories and an atomically replaced `current`
// symlink: application updates, demos, tests) and Command (hook commands for
// a real bootloader: U-Boot, GRUB, RAUC; docs/agent.md).
//
// Contract: Write never touches the active slot; a slot whose Write did not
// finish is never reported as installed; Switch and MarkGood are idempotent,
// so the agent may repeat them after a crash.
package slot

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigil-ota/vigil/agent/internal/journal"
)

// The two slots.
const (
	A = "a"
	B = "b"
)

// Other returns the slot that is not s.
func Other(s string) string {
	if s == A {
		return B
	}
	return A
}

// Valid reports whether s names a slot.
func Valid(s string) bool { return s == A || s == B }

// ErrEmpty is returned by Installed for a slot that holds no release.
var ErrEmpty = errors.New("slot holds no installed release")

// Backend is one way of keeping two slots.
type Backend interface {
	// Active returns the slot the device runs now.
	Active(ctx context.Context) (string, error)
	// Installed returns the release slot holds, or ErrEmpty.
	Installed(ctx context.Context, slot string) (journal.Release, error)
	// Write puts the verified image file into slot, which must not be the
	// active one, verifies what it wrote, and records rel for Installed.
	Write(ctx context.Context, slot, image string, rel journal.Release) error
	// Switch makes slot the one that runs.
	Switch(ctx context.Context, slot string) error
	// MarkGood records that slot passed its health check.
	MarkGood(ctx context.Context, slot string) error
}

// ErrActiveSlot is returned by Write when asked to overwrite the running slot.
var ErrActiveSlot = errors.New("refusing to write the active slot")

func checkSlot(s string) error {
	if !Valid(s) {
		return fmt.Errorf("slot %q is not %q or %q", s, A, B)
	}
	return nil
}
