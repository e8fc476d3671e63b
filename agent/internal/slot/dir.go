package slot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/vigil-ota/vigil/agent/internal/failpoint"
	"github.com/vigil-ota/vigil/agent/internal/journal"
)

// Limits of image unpacking, with their units.
const (
	// MaxUnpackedBytes bounds what one tar image may unpack to.
	MaxUnpackedBytes = 64 << 30
	// MaxTarEntries bounds the number of entries in one tar image.
	MaxTarEntries = 1_000_000
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
type Dir struct {
	Root string
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
	manifest, err := unpack(ctx, image, staging)
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

// unpack writes image into dir and returns a manifest of what it wrote
// (relative path → sha256, "" for directories and links).
func unpack(ctx context.Context, image, dir string) (map[string]string, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(512)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		r = gz
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case len(head) >= 262 && string(head[257:262]) == "ustar":
	default:
		return copySingle(ctx, br, filepath.Join(dir, SingleFileName))
	}
	return untar(ctx, r, dir)
}

func copySingle(ctx context.Context, r io.Reader, dst string) (map[string]string, error) {
	sum, err := writeFile(ctx, dst, r, 0o644)
	if err != nil {
		return nil, err
	}
	if err := journal.SyncDir(filepath.Dir(dst)); err != nil {
		return nil, err
	}
	return map[string]string{SingleFileName: sum}, nil
}

func writeFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) (string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r}); err != nil {
		return "", err
	}
	failpoint.Hit("unpack-mid") // a file written, not yet synced or renamed into place
	if err := f.Sync(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

// untar unpacks regular files, directories and relative symlinks that stay
// inside dir; anything else (absolute or escaping paths, devices, hard
// links) fails the image.
func untar(ctx context.Context, r io.Reader, dir string) (map[string]string, error) {
	tr := tar.NewReader(r)
	manifest := map[string]string{}
	var total int64
	var dirs []string
	for n := 0; ; n++ {
		if n > MaxTarEntries {
			return nil, fmt.Errorf("image has more than %d entries", MaxTarEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a valid tar: %w", err)
		}
		name := filepath.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("tar entry %q leaves the slot", hdr.Name)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return nil, err
			}
			dirs = append(dirs, dst)
			manifest[name] = ""
		case tar.TypeReg:
			total += hdr.Size
			if total > MaxUnpackedBytes {
				return nil, fmt.Errorf("image unpacks to more than %d bytes", int64(MaxUnpackedBytes))
			}
			sum, err := writeFile(ctx, dst, tr, fs.FileMode(hdr.Mode).Perm())
			if err != nil {
				return nil, err
			}
			manifest[name] = sum
		case tar.TypeSymlink:
			target := filepath.Clean(filepath.Join(filepath.Dir(name), hdr.Linkname))
			if filepath.IsAbs(hdr.Linkname) || target == ".." || strings.HasPrefix(target, "../") {
				return nil, fmt.Errorf("tar symlink %q → %q leaves the slot", hdr.Name, hdr.Linkname)
			}
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return nil, err
			}
			manifest[name] = "link:" + hdr.Linkname
		default:
			return nil, fmt.Errorf("tar entry %q has type %q, which slots do not hold", hdr.Name, string(hdr.Typeflag))
		}
	}
	for _, d := range append(dirs, dir) {
		if err := journal.SyncDir(d); err != nil {
			return nil, err
		}
	}
	return manifest, nil
}

// verifyTree re-reads what was written and compares it with the manifest.
func verifyTree(dir string, manifest map[string]string) error {
	for name, want := range manifest {
		p := filepath.Join(dir, name)
		switch {
		case want == "":
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				return fmt.Errorf("%s: directory missing", name)
			}
		case strings.HasPrefix(want, "link:"):
			if got, err := os.Readlink(p); err != nil || got != strings.TrimPrefix(want, "link:") {
				return fmt.Errorf("%s: symlink differs", name)
			}
		default:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			if hex.EncodeToString(h.Sum(nil)) != want {
				return fmt.Errorf("%s: content differs from the image", name)
			}
		}
	}
	return nil
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
