package slot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/internal/imagefmt"
)

// Limits of image unpacking, with their units.
const (
	// MaxUnpackedBytes bounds what one tar image may unpack to.
	MaxUnpackedBytes = imagefmt.MaxUnpackedBytes
	// MaxTarEntries bounds the number of entries in one tar image.
	MaxTarEntries = imagefmt.MaxTarEntries
	// DefaultMaxUnpackRatio bounds what an archive without a signed
	// unpacked_length may unpack to, as a multiple of its own size.
	DefaultMaxUnpackRatio = 20
	// FreeSpaceMargin is kept free on the slot filesystem beyond what an
	// image needs, in bytes.
	FreeSpaceMargin = 16 << 20
	// MaxLinkHops bounds how many symlinks one path may pass through when
	// a link's target is resolved (as the kernel's ELOOP limit does).
	MaxLinkHops = 40
	// SingleFileName is the name a non-archive image gets inside its slot.
	SingleFileName = "image"
)

// Dir keeps two slot directories, ROOT/a and ROOT/b, and a symlink
// ROOT/current naming the active one. The application runs from
// ROOT/current. A tar image (plain, gzip or zstd) is unpacked into the slot;
// any other image is copied in as ROOT/SLOT/image.
//
// Crash safety: Write unpacks into ROOT/SLOT.new, fsyncs every file and
// directory, re-reads what it wrote against the manifest it made while
// unpacking, then renames it to ROOT/SLOT and only then writes
// ROOT/SLOT.release.json. Switch replaces the symlink by rename. A crash at
// any point leaves either the old slot or the complete new one.
//
// Confinement (docs/security.md, finding 1): every file is created through
// an os.Root opened on ROOT/SLOT.new, so no write can land outside the slot
// whatever links exist; an entry whose path passes through a symlink of
// the image is refused, so a link is never followed while unpacking; a
// symlink whose target, resolved against the image's other links, leaves
// the slot is refused (checked again once every entry is in, since a later
// link can change where an earlier one leads).
//
// Size (finding 12): a tar image unpacks to at most its signed
// unpacked_length, or MaxUnpackRatio times its own size when that is not
// signed, counted from the bytes written; the slot filesystem must have
// the room before a byte is written.
type Dir struct {
	Root string
	// MaxUnpackRatio: 0 means DefaultMaxUnpackRatio.
	MaxUnpackRatio int64
	// Failpoint is called at the "unpack-mid" crash-injection point; nil
	// means failpoint.Hit.
	Failpoint func(name string)
}

var _ Backend = (*Dir)(nil)

func (d *Dir) slotDir(s string) string     { return filepath.Join(d.Root, s) }
func (d *Dir) releaseFile(s string) string { return filepath.Join(d.Root, s+".release.json") }
func (d *Dir) current() string             { return filepath.Join(d.Root, "current") }

// Provision prepares a fresh device: slot a holds the factory release (the
// files already in ROOT/a, if any) and is active.
func (d *Dir) Provision(rel journal.Release) error {
	if err := os.MkdirAll(d.slotDir(A), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(d.slotDir(B), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(rel)
	if err := journal.WriteFileDurable(d.releaseFile(A), b, 0o644); err != nil {
		return err
	}
	if _, err := os.Lstat(d.current()); errors.Is(err, fs.ErrNotExist) {
		return d.Switch(context.Background(), A)
	}
	return nil
}

// Active implements Backend.
func (d *Dir) Active(context.Context) (string, error) {
	target, err := os.Readlink(d.current())
	if err != nil {
		return "", fmt.Errorf("dir slots: %s is not a slot link (provision the device first): %w", d.current(), err)
	}
	s := filepath.Base(target)
	if err := checkSlot(s); err != nil {
		return "", fmt.Errorf("dir slots: %s points at %q: %w", d.current(), target, err)
	}
	return s, nil
}

// Installed implements Backend.
func (d *Dir) Installed(_ context.Context, s string) (journal.Release, error) {
	if err := checkSlot(s); err != nil {
		return journal.Release{}, err
	}
	b, err := os.ReadFile(d.releaseFile(s))
	if errors.Is(err, fs.ErrNotExist) {
		return journal.Release{}, ErrEmpty
	}
	if err != nil {
		return journal.Release{}, err
	}
	var rel journal.Release
	if err := json.Unmarshal(b, &rel); err != nil {
		return journal.Release{}, fmt.Errorf("dir slots: %s: %w", d.releaseFile(s), err)
	}
	return rel, nil
}

// Write implements Backend.
func (d *Dir) Write(ctx context.Context, s, image string, rel journal.Release) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	if active, err := d.Active(ctx); err == nil && active == s {
		return ErrActiveSlot
	}
	// The slot stops counting as installed before a byte of it changes.
	if err := os.Remove(d.releaseFile(s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := journal.SyncDir(d.Root); err != nil {
		return err
	}
	staging := d.slotDir(s) + ".new"
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return err
	}
	manifest, err := d.unpack(ctx, image, staging, rel.UnpackedLength)
	if err != nil {
		return fmt.Errorf("unpack %s into slot %s: %w", filepath.Base(image), s, err)
	}
	if err := verifyTree(staging, manifest); err != nil {
		return fmt.Errorf("slot %s failed verification after writing: %w", s, err)
	}
	if err := os.RemoveAll(d.slotDir(s)); err != nil {
		return err
	}
	if err := os.Rename(staging, d.slotDir(s)); err != nil {
		return err
	}
	if err := journal.SyncDir(d.Root); err != nil {
		return err
	}
	b, _ := json.Marshal(rel)
	return journal.WriteFileDurable(d.releaseFile(s), b, 0o644)
}

// Switch implements Backend: a new symlink renamed over `current`.
func (d *Dir) Switch(_ context.Context, s string) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	tmp := d.current() + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(s, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, d.current()); err != nil {
		return err
	}
	return journal.SyncDir(d.Root)
}

// MarkGood implements Backend.
func (d *Dir) MarkGood(_ context.Context, s string) error {
	if err := checkSlot(s); err != nil {
		return err
	}
	return journal.WriteFileDurable(filepath.Join(d.Root, "good"), []byte(s+"\n"), 0o644)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
