package slot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/agent/internal/journal"
)

// HookTimeout bounds each hook command; WriteImageTimeout the image write.
const (
	HookTimeout       = 2 * time.Minute
	WriteImageTimeout = 2 * time.Hour
)

// Command drives a real bootloader through hook commands, each run with
// `sh -c` and the slot in $VIGIL_SLOT (and the image in $VIGIL_IMAGE):
//
//	BootedSlot   prints the slot the device booted from ("a" or "b")
//	SetNextBoot  makes $VIGIL_SLOT the slot to boot (U-Boot: fw_setenv; GRUB: grub-editenv)
//	MarkGood     marks $VIGIL_SLOT good so the bootloader stops counting attempts
//	WriteImage   writes the file $VIGIL_IMAGE into $VIGIL_SLOT and verifies it (dd, rauc install …)
//
// docs/agent.md has examples for U-Boot, GRUB and RAUC. What each slot holds
// is recorded by the agent in StateDir, since bootloaders do not know
// release versions.
type Command struct {
	BootedSlot, SetNextBoot, MarkGoodCmd, WriteImage string
	// StateDir keeps SLOT.release.json files.
	StateDir string
}

var _ Backend = (*Command)(nil)

func (c *Command) run(ctx context.Context, timeout time.Duration, script, slot, image string) (string, error) {
	if script == "" {
		return "", errors.New("command slots: hook not configured")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "VIGIL_SLOT="+slot, "VIGIL_IMAGE="+image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hook %q: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (c *Command) releaseFile(s string) string { return filepath.Join(c.StateDir, s+".release.json") }

// Provision records the factory release of slot a.
func (c *Command) Provision(rel journal.Release) error {
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(rel)
	return journal.WriteFileDurable(c.releaseFile(A), b, 0o600)
}

// Active implements Backend.
func (c *Command) Active(ctx context.Context) (string, error) {
	out, err := c.run(ctx, HookTimeout, c.BootedSlot, "", "")
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(out)
	if err := checkSlot(s); err != nil {
		return "", fmt.Errorf("booted-slot hook printed %q: %w", s, err)
	}
	return s, nil
}

// Installed implements Backend.
func (c *Command) Installed(_ context.Context, s string) (journal.Release, error) {
	if err := checkSlot(s); err != nil {
		return journal.Release{}, err
	}
	b, err := os.ReadFile(c.releaseFile(s))
	if errors.Is(err, fs.ErrNotExist) {
		return journal.Release{}, ErrEmpty
	}
	if err != nil {
		return journal.Release{}, err
	}
	var rel journal.Release
	return rel, json.Unmarshal(b, &rel)
}

// Write implements Backend.
func (c *Command) Write(ctx context.Context, s, image string, rel journal.Release) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	if active, err := c.Active(ctx); err != nil {
		return err
	} else if active == s {
		return ErrActiveSlot
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return err
	}
	if err := os.Remove(c.releaseFile(s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, err := c.run(ctx, WriteImageTimeout, c.WriteImage, s, image); err != nil {
		return err
	}
	b, _ := json.Marshal(rel)
	return journal.WriteFileDurable(c.releaseFile(s), b, 0o600)
}

// Switch implements Backend.
func (c *Command) Switch(ctx context.Context, s string) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	_, err := c.run(ctx, HookTimeout, c.SetNextBoot, s, "")
	return err
}

// MarkGood implements Backend.
func (c *Command) MarkGood(ctx context.Context, s string) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	_, err := c.run(ctx, HookTimeout, c.MarkGoodCmd, s, "")
	return err
}
