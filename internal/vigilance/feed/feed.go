// Package feed reads the files of a vulnerability feed from a zip archive
// (as osv.dev serves per-ecosystem all.zip), a directory tree of .json
// files (as nvd-json-data-feeds stores NVD records), or a single file.
//
// Threat model: a feed is untrusted, possibly hostile: every file is read
// through a limit (MaxFileBytes) whatever its header claims, the number of
// files and the total uncompressed size are bounded (a zip bomb stops at
// MaxTotalBytes), symbolic links in a directory are not followed, and
// nothing is ever extracted to disk.
package feed

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Limits, with their units.
const (
	// MaxFileBytes bounds one file of a feed (an NVD API page of 2,000
	// records is about 40 MB).
	MaxFileBytes = 128 << 20
	// MaxFiles bounds the files of one feed.
	MaxFiles = 2_000_000
	// MaxTotalBytes bounds what one feed unpacks to.
	MaxTotalBytes = 16 << 30
)

// File is one file of a feed.
type File struct {
	Name string
	Data []byte
}

// ErrLimit marks a feed over a limit; it ends the reading.
var ErrLimit = errors.New("feed over a limit")

// Files yields the .json files under path: the entries of a .zip file, the
// files of a directory tree (in name order), or the file itself. A file it
// cannot read is yielded with its error; a limit ends the sequence.
func Files(path string) iter.Seq2[File, error] {
	return func(yield func(File, error) bool) {
		st, err := os.Stat(path)
		if err != nil {
			yield(File{Name: path}, err)
			return
		}
		switch {
		case st.IsDir():
			readDir(path, yield)
		case strings.HasSuffix(strings.ToLower(path), ".zip"):
			readZip(path, yield)
		default:
			data, err := readLimited(path)
			yield(File{Name: filepath.Base(path), Data: data}, err)
		}
	}
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return limited(f)
}

func limited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: a file is over %d bytes", ErrLimit, MaxFileBytes)
	}
	return b, nil
}

func readZip(path string, yield func(File, error) bool) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		yield(File{Name: path}, fmt.Errorf("not a zip archive: %w", err))
		return
	}
	defer zr.Close()
	if len(zr.File) > MaxFiles {
		yield(File{Name: path}, fmt.Errorf("%w: more than %d files", ErrLimit, MaxFiles))
		return
	}
	var total int64
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() || !strings.HasSuffix(strings.ToLower(zf.Name), ".json") {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			if !yield(File{Name: zf.Name}, err) {
				return
			}
			continue
		}
		data, err := limited(rc)
		rc.Close()
		total += int64(len(data))
		if total > MaxTotalBytes {
			yield(File{Name: zf.Name}, fmt.Errorf("%w: the archive unpacks to more than %d bytes", ErrLimit, int64(MaxTotalBytes)))
			return
		}
		if !yield(File{Name: zf.Name, Data: data}, err) || errors.Is(err, ErrLimit) {
			return
		}
	}
}

func readDir(root string, yield func(File, error) bool) {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 || !d.Type().IsRegular() || !strings.HasSuffix(strings.ToLower(d.Name()), ".json") {
			return nil
		}
		if len(names) >= MaxFiles {
			return fmt.Errorf("%w: more than %d files", ErrLimit, MaxFiles)
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		yield(File{Name: root}, err)
		return
	}
	sort.Strings(names)
	var total int64
	for _, p := range names {
		data, err := readLimited(p)
		total += int64(len(data))
		if total > MaxTotalBytes {
			yield(File{Name: p}, fmt.Errorf("%w: the directory holds more than %d bytes", ErrLimit, int64(MaxTotalBytes)))
			return
		}
		rel, _ := filepath.Rel(root, p)
		if !yield(File{Name: rel, Data: data}, err) || errors.Is(err, ErrLimit) {
			return
		}
	}
}
