// Package slottest is the conformance suite every slot.Backend passes.
package slottest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
)

// Harness is a fresh backend on a provisioned device (slot a active,
// holding Factory), and a way to "restart" the device after a Switch (dir:
// nothing; a bootloader: a reboot).
type Harness struct {
	Backend slot.Backend
	Restart func()
}

// Factory is the release the harness provisions into slot a.
var Factory = journal.Release{Target: "demo-pump/factory.img", Version: "1.0.0", SHA256: "00", Length: 1}

// Run runs the suite.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	image := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "image.bin")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	rel := journal.Release{Target: "demo-pump/1.1.0.img", Version: "1.1.0", SHA256: "11", Length: 5}
	t.Run("ProvisionedDeviceRunsSlotA", func(t *testing.T) {
		h := newHarness(t)
		if a, err := h.Backend.Active(t.Context()); err != nil || a != slot.A {
			t.Fatalf("active %q %v", a, err)
		}
		if got, err := h.Backend.Installed(t.Context(), slot.A); err != nil || got != Factory {
			t.Fatalf("slot a holds %+v %v", got, err)
		}
		if _, err := h.Backend.Installed(t.Context(), slot.B); !errors.Is(err, slot.ErrEmpty) {
			t.Fatalf("slot b: %v, want ErrEmpty", err)
		}
	})
	t.Run("WritingTheActiveSlotIsRefused", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Backend.Write(t.Context(), slot.A, image(t, "x"), rel); !errors.Is(err, slot.ErrActiveSlot) {
			t.Fatalf("got %v", err)
		}
		if got, _ := h.Backend.Installed(t.Context(), slot.A); got != Factory {
			t.Fatalf("slot a changed: %+v", got)
		}
	})
	t.Run("WriteSwitchRestartRunsTheNewSlot", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Backend.Write(t.Context(), slot.B, image(t, "v1.1"), rel); err != nil {
			t.Fatal(err)
		}
		if got, err := h.Backend.Installed(t.Context(), slot.B); err != nil || got != rel {
			t.Fatalf("slot b holds %+v %v", got, err)
		}
		for range 2 { // idempotent
			if err := h.Backend.Switch(t.Context(), slot.B); err != nil {
				t.Fatal(err)
			}
		}
		h.Restart()
		if a, err := h.Backend.Active(t.Context()); err != nil || a != slot.B {
			t.Fatalf("active after switch: %q %v", a, err)
		}
		if err := h.Backend.MarkGood(t.Context(), slot.B); err != nil {
			t.Fatal(err)
		}
		if got, _ := h.Backend.Installed(t.Context(), slot.A); got != Factory {
			t.Fatalf("the old slot changed: %+v", got)
		}
		// And back: a rollback is a switch to the previous slot.
		if err := h.Backend.Switch(t.Context(), slot.A); err != nil {
			t.Fatal(err)
		}
		h.Restart()
		if a, _ := h.Backend.Active(t.Context()); a != slot.A {
			t.Fatalf("active after switching back: %q", a)
		}
	})
	t.Run("FailedWriteLeavesTheSlotNotInstalled", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Backend.Write(t.Context(), slot.B, image(t, "v1.1"), rel); err != nil {
			t.Fatal(err)
		}
		if err := h.Backend.Write(t.Context(), slot.B, filepath.Join(t.TempDir(), "missing.img"), rel); err == nil {
			t.Fatal("writing a missing image succeeded")
		}
		if _, err := h.Backend.Installed(t.Context(), slot.B); !errors.Is(err, slot.ErrEmpty) {
			t.Fatalf("a slot whose write failed still counts as installed: %v", err)
		}
	})
	t.Run("BadSlotNamesAreRefused", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Backend.Switch(t.Context(), "c"); err == nil {
			t.Fatal("switched to slot c")
		}
		if _, err := h.Backend.Installed(t.Context(), "../a"); err == nil {
			t.Fatal("read slot ../a")
		}
	})
}
