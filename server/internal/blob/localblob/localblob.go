// Package localblob is the embedded-default blob store: objects are files
// under one root directory, named by their key.
//
// Crash safety: Put writes into a temporary file under <root>/.tmp, fsyncs
// it, renames it over the final name and fsyncs the parent directory, so a
// crash at any point leaves either the old object or the new one, never a
// half-written file under a real key. Leftover temporary files are removed
// when the store is opened. Concurrent writers of one key each write their own
// temporary file; rename is atomic, so the last rename wins whole.
//
// Threat model: keys come from the server's own code, but are still checked
// with blob.ValidateKey, so no key can name a file outside the root.
package localblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-ota/vigil/internal/atomicfile"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
)

// tmpDirName holds in-flight writes; it is never listed and no valid key
// can name it (keys may not start with a dot segment of this exact name).
const tmpDirName = ".tmp"

// DirPerm and FilePerm are the permissions of created directories and objects.
const (
	DirPerm  fs.FileMode = 0o755
	FilePerm fs.FileMode = 0o644
)

// Store is a blob.Store on a local directory.
type Store struct {
	root string
}

var _ blob.Store = (*Store)(nil)

// Open creates root if needed, checks that it is writable and clears
// leftover temporary files from an earlier crash.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blob directory %q: %w", root, err)
	}
	tmp := filepath.Join(abs, tmpDirName)
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("blob directory %q: clearing temporary files: %w", abs, err)
	}
	if err := os.MkdirAll(tmp, DirPerm); err != nil {
		return nil, fmt.Errorf("blob directory %q is not writable: %w", abs, err)
	}
	probe, err := os.CreateTemp(tmp, "probe-*")
	if err != nil {
		return nil, fmt.Errorf("blob directory %q is not writable: %w", abs, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &Store{root: abs}, nil
}

// Root is the directory the store writes to.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	if key == tmpDirName || strings.HasPrefix(key, tmpDirName+"/") {
		return "", apperr.New(apperr.Invalid, "object key %q is reserved", key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	final, err := s.path(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return apperr.New(apperr.Invalid, "object %q: negative size %d", key, size)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDirName), "put-*")
	if err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "blob store cannot create a temporary file")
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, blob.ExactReader(r, size)}); err != nil {
		return blob.SizeError(key, err)
	}
	if err = f.Chmod(FilePerm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "blob store cannot sync object %q", key)
	}
	if err = f.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err = os.MkdirAll(dir, DirPerm); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "blob store cannot create directory for %q", key)
	}
	if err = os.Rename(f.Name(), final); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "blob store cannot rename object %q into place", key)
	}
	return atomicfile.SyncDir(dir)
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string, rng *blob.Range) (io.ReadCloser, blob.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, blob.Info{}, notFoundOr(key, err)
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		f.Close()
		return nil, blob.Info{}, notFoundOr(key, err)
	}
	info := infoOf(key, st)
	if err := blob.ValidateRange(rng, info.Size); err != nil {
		f.Close()
		return nil, blob.Info{}, err
	}
	if rng == nil {
		return readCloser{ctxReader{ctx, f}, f}, info, nil
	}
	n := info.Size - rng.Offset
	if rng.Length >= 0 && rng.Length < n {
		n = rng.Length
	}
	return readCloser{ctxReader{ctx, io.NewSectionReader(f, rng.Offset, n)}, f}, info, nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return blob.Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil || st.IsDir() {
		return blob.Info{}, notFoundOr(key, err)
	}
	return infoOf(key, st), nil
}

// Delete implements blob.Store. Empty parent directories are left in place;
// they are invisible to List.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return apperr.Wrap(err, apperr.Unavailable, "blob store cannot delete %q", key)
	}
	return nil
}

// List implements blob.Store. It walks only the directory that contains the
// prefix's last slash, so listing "metadata/" does not read the targets.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[blob.Info, error] {
	return func(yield func(blob.Info, error) bool) {
		start := s.root
		if i := strings.LastIndex(prefix, "/"); i >= 0 {
			start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
		}
		var infos []blob.Info
		err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(s.root, p)
			key := filepath.ToSlash(rel)
			if d.IsDir() {
				if key == tmpDirName {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasPrefix(key, prefix) {
				return nil
			}
			st, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) { // deleted while walking
					return nil
				}
				return err
			}
			infos = append(infos, infoOf(key, st))
			return nil
		})
		if err != nil {
			yield(blob.Info{}, apperr.Wrap(err, apperr.Unavailable, "blob store cannot list %q", prefix))
			return
		}
		sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
		for _, in := range infos {
			if !yield(in, nil) {
				return
			}
		}
	}
}

func infoOf(key string, st fs.FileInfo) blob.Info {
	h := sha256.Sum256([]byte(strconv.FormatInt(st.ModTime().UnixNano(), 16) + "-" + strconv.FormatInt(st.Size(), 16) + "-" + key))
	return blob.Info{Key: key, Size: st.Size(), ModTime: st.ModTime().UTC(), ETag: `"` + hex.EncodeToString(h[:12]) + `"`}
}

func notFoundOr(key string, err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory") {
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	return apperr.Wrap(err, apperr.Unavailable, "blob store cannot read %q", key)
}

// ctxReader stops a long copy when its context ends.
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

type readCloser struct {
	io.Reader
	io.Closer
}
