package slot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/vigil-ota/vigil/agent/internal/failpoint"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/internal/imagefmt"
)

// unpack writes image into dir (a fresh, empty directory) and returns a
// manifest of what it wrote (relative path → sha256, "" for directories,
// "link:TARGET" for symlinks). signedUnpacked is the release's signed
// unpacked_length (0 when not signed).
func (d *Dir) unpack(ctx context.Context, image, dir string, signedUnpacked int64) (map[string]string, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	format, r, closeFn, err := imagefmt.Reader(f)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	limit, need := st.Size(), st.Size()
	if format.IsTar() {
		ratio := d.MaxUnpackRatio
		if ratio <= 0 {
			ratio = DefaultMaxUnpackRatio
		}
		limit = min(int64(MaxUnpackedBytes), ratio*max(st.Size(), 1))
		if signedUnpacked > 0 {
			limit, need = signedUnpacked, signedUnpacked
		}
	}
	if err := checkFreeSpace(dir, need); err != nil {
		return nil, err
	}
	if !format.IsTar() {
		sum, _, err := writeFile(ctx, root, SingleFileName, r, 0o644, limit, d.hit())
		if err != nil {
			return nil, err
		}
		if err := journal.SyncDir(dir); err != nil {
			return nil, err
		}
		return map[string]string{SingleFileName: sum}, nil
	}
	return untar(ctx, r, root, dir, limit, signedUnpacked > 0, d.hit())
}

func (d *Dir) hit() func(string) {
	if d.Failpoint != nil {
		return d.Failpoint
	}
	return failpoint.Hit
}

// checkFreeSpace refuses to start when the filesystem holding dir has less
// than need + FreeSpaceMargin bytes available.
func checkFreeSpace(dir string, need int64) error {
	var fsst syscall.Statfs_t
	if err := syscall.Statfs(dir, &fsst); err != nil {
		return nil // not knowable here: the writes themselves will tell
	}
	avail := int64(fsst.Bavail) * int64(fsst.Bsize)
	if avail < need+FreeSpaceMargin {
		return fmt.Errorf("the slot filesystem has %d bytes free; the image needs %d (plus a %d-byte margin)", avail, need, int64(FreeSpaceMargin))
	}
	return nil
}

// writeFile creates name (which must not exist: O_EXCL never follows a
// link) inside root and copies r into it, at most limit bytes, hashing as
// it goes. It returns the sha256 and the bytes written.
func writeFile(ctx context.Context, root *os.Root, name string, r io.Reader, mode fs.FileMode, limit int64, hit func(string)) (string, int64, error) {
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, limit+1))
	if err != nil {
		return "", n, err
	}
	if n > limit {
		return "", n, errTooBig
	}
	hit("unpack-mid") // a file written, not yet synced or renamed into place
	if err := f.Sync(); err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, f.Close()
}

var errTooBig = fmt.Errorf("over the unpack limit")

// untar unpacks regular files, directories and relative symlinks that stay
// inside the slot; anything else (absolute or escaping paths, entries
// through links, devices, hard links, duplicates) fails the image.
func untar(ctx context.Context, r io.Reader, root *os.Root, dir string, limit int64, signed bool, hit func(string)) (map[string]string, error) {
	tr := tar.NewReader(r)
	manifest := map[string]string{}
	links := map[string]string{} // symlink name → its target, as unpacked
	var total int64
	dirs := []string{"."}
	tooBig := func() error {
		if signed {
			return fmt.Errorf("image unpacks to more than its signed unpacked_length of %d bytes", limit)
		}
		return fmt.Errorf("image unpacks to more than %d bytes, the bound for an image without a signed unpacked_length (max_unpack_ratio times its size)", limit)
	}
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
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "." {
			continue
		}
		if via := throughLink(name, links); via != "" {
			return nil, fmt.Errorf("tar entry %q leaves the slot: it passes through the image's symlink %q", hdr.Name, via)
		}
		if _, seen := manifest[name]; seen && hdr.Typeflag != tar.TypeDir {
			return nil, fmt.Errorf("tar entry %q appears twice", hdr.Name)
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return nil, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if prev, seen := manifest[name]; seen && prev != "" {
				return nil, fmt.Errorf("tar entry %q: a directory where the image already put a file or link", hdr.Name)
			}
			if err := root.MkdirAll(name, 0o755); err != nil {
				return nil, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, name)
			manifest[name] = ""
		case tar.TypeReg:
			sum, written, err := writeFile(ctx, root, name, tr, fs.FileMode(hdr.Mode).Perm(), limit-total, hit)
			total += written
			if err == errTooBig {
				return nil, tooBig()
			}
			if err != nil {
				return nil, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			manifest[name] = sum
		case tar.TypeSymlink:
			if _, escapes := resolveLink(name, hdr.Linkname, links); escapes {
				return nil, fmt.Errorf("tar symlink %q → %q leaves the slot", hdr.Name, hdr.Linkname)
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return nil, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			links[name] = hdr.Linkname
			manifest[name] = "link:" + hdr.Linkname
		default:
			return nil, fmt.Errorf("tar entry %q has type %q, which slots do not hold", hdr.Name, string(hdr.Typeflag))
		}
	}
	// A link added later can change where an earlier one leads
	// (x → y/.. before y → .): check every link against the final tree.
	for name, target := range links {
		if _, escapes := resolveLink(name, target, links); escapes {
			return nil, fmt.Errorf("tar symlink %q → %q leaves the slot once the image's other links are in place", name, target)
		}
	}
	for _, d := range dirs {
		if err := journal.SyncDir(path.Join(dir, d)); err != nil {
			return nil, err
		}
	}
	return manifest, nil
}

// entryName cleans a tar entry name and refuses one that is absolute,
// climbs out, or holds bytes a path must not.
func entryName(raw string) (string, error) {
	if strings.ContainsAny(raw, "\x00\\") {
		return "", fmt.Errorf("tar entry %q has a NUL or backslash in its name", raw)
	}
	name := path.Clean(raw)
	if path.IsAbs(raw) || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("tar entry %q leaves the slot", raw)
	}
	return name, nil
}

// throughLink returns the first proper prefix of name that is a symlink of
// the image ("" when none): writing name would follow that link.
func throughLink(name string, links map[string]string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			if _, ok := links[name[:i]]; ok {
				return name[:i]
			}
		}
	}
	return ""
}

// resolveLink resolves the symlink at name with the given target against
// the image's links, and reports where it leads (relative to the slot) and
// whether it leaves the slot (or loops more than MaxLinkHops times).
func resolveLink(name, target string, links map[string]string) (string, bool) {
	if path.IsAbs(target) || target == "" || strings.ContainsRune(target, 0) {
		return "", true
	}
	hops := 0
	parts, ok := walk(splitPath(path.Dir(name)), target, links, &hops)
	return strings.Join(parts, "/"), !ok
}

func splitPath(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// walk follows rel from the directory cur (components below the slot),
// substituting the image's links; ok is false when a step climbs above the
// slot, a link is absolute, or the hops run out.
func walk(cur []string, rel string, links map[string]string, hops *int) ([]string, bool) {
	cur = append([]string(nil), cur...)
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, false
			}
			cur = cur[:len(cur)-1]
			continue
		}
		here := strings.Join(append(cur, c), "/")
		t, isLink := links[here]
		if !isLink {
			cur = append(cur, c)
			continue
		}
		if *hops++; *hops > MaxLinkHops || path.IsAbs(t) {
			return nil, false
		}
		var ok bool
		if cur, ok = walk(cur, t, links, hops); !ok {
			return nil, false
		}
	}
	return cur, true
}

// verifyTree re-reads what was written, through root, and compares it with
// the manifest.
func verifyTree(dir string, manifest map[string]string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for name, want := range manifest {
		switch {
		case want == "":
			if st, err := root.Lstat(name); err != nil || !st.IsDir() {
				return fmt.Errorf("%s: directory missing", name)
			}
		case strings.HasPrefix(want, "link:"):
			if got, err := root.Readlink(name); err != nil || got != strings.TrimPrefix(want, "link:") {
				return fmt.Errorf("%s: symlink differs", name)
			}
		default:
			f, err := root.Open(name)
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
