// Package blob defines the object store the server keeps TUF metadata, patch
// images and SBOMs in, and the rules every backend obeys. Backends live in
// subpackages (localblob: a directory; s3blob: S3-compatible storage) and all
// pass the same conformance suite (blobtest).
//
// Contract, for every backend:
//   - Put is atomic: a reader of the key sees either the previous object or
//     the complete new one, never a partial write, also after a crash and
//     with concurrent writers of the same key (the last complete one wins).
//   - Put streams: memory use does not grow with the object's size.
//   - Put stores exactly size bytes. A reader that ends early or has bytes
//     left over fails the Put with an Invalid error and nothing is stored.
//   - A missing key is ErrNotFound (never a permission error), so clients
//     such as TUF's root walk see a clean "not there".
//
// Keys are slash-separated relative paths ("metadata/1.root.json"); see
// ValidateKey. Stores are safe for concurrent use.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// MaxKeyLength is the longest key, in bytes, any backend accepts. S3 allows
// 1024; we keep the same bound everywhere so behaviour does not depend on
// the backend.
const MaxKeyLength = 1024

// ErrNotFound is returned (possibly wrapped) for a key that does not exist.
var ErrNotFound = apperr.New(apperr.NotFound, "object not found").WithCode(api.CodeObjectNotFound)

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag is an opaque validator that changes whenever the content does.
	ETag string
}

// Range selects bytes [Offset, Offset+Length) of an object. Length < 0 means
// "to the end". A nil *Range means the whole object.
type Range struct {
	Offset int64
	Length int64
}

// Store is an object store. ctx bounds each call; for Get it also bounds
// reading the returned body.
type Store interface {
	// Put stores exactly size bytes read from r under key, atomically.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object, or the byte range rng of it. The caller closes
	// the reader. Info describes the whole object.
	Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error)
	// Stat describes the object without reading it.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List yields every object whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
}

// ValidateKey rejects keys that are not clean relative slash-separated paths:
// empty, too long, absolute, with empty, "." or ".." segments, backslashes or
// control characters. Both backends apply it, so a key that works on one
// works on the other.
func ValidateKey(key string) error {
	if key == "" {
		return apperr.New(apperr.Invalid, "object key is empty")
	}
	if len(key) > MaxKeyLength {
		return apperr.New(apperr.Invalid, "object key is %d bytes, longer than the limit of %d", len(key), MaxKeyLength)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return apperr.New(apperr.Invalid, "object key %q contains a control character or backslash", key)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "", ".", "..":
			return apperr.New(apperr.Invalid, "object key %q has an empty, \".\" or \"..\" path segment", key)
		}
	}
	return nil
}

// ValidateRange checks rng against an object of the given size.
func ValidateRange(rng *Range, size int64) error {
	if rng == nil {
		return nil
	}
	if rng.Offset < 0 {
		return apperr.New(apperr.Invalid, "range offset %d is negative", rng.Offset)
	}
	if rng.Offset > size || (rng.Offset == size && size > 0) {
		return apperr.New(apperr.OutOfRange, "range offset %d is outside the object (size %d)", rng.Offset, size)
	}
	return nil
}

// ErrSizeMismatch is returned (wrapped) when a Put's reader does not hold
// exactly the declared number of bytes.
var ErrSizeMismatch = errors.New("reader size does not match the declared size")

// ExactReader returns a reader that yields r's bytes and fails with
// ErrSizeMismatch if r ends before size bytes or still has bytes after them.
// The check for extra bytes happens before the final bytes are handed out,
// so a backend that stops reading at size still sees the failure before it
// commits the object.
func ExactReader(r io.Reader, size int64) io.Reader {
	return &exactReader{r: r, remaining: size, size: size}
}

type exactReader struct {
	r         io.Reader
	remaining int64
	size      int64
	err       error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.remaining == 0 {
		return 0, e.probeEOF()
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.r.Read(p)
	e.remaining -= int64(n)
	if e.remaining == 0 {
		if perr := e.probeEOF(); perr != io.EOF {
			e.err = perr
			return 0, perr
		}
		return n, nil
	}
	if err == io.EOF {
		e.err = fmt.Errorf("%w: got %d of %d bytes", ErrSizeMismatch, e.size-e.remaining, e.size)
		return n, e.err
	}
	return n, err
}

// probeEOF reports io.EOF when the underlying reader is exhausted and an
// error when it still has data.
func (e *exactReader) probeEOF() error {
	var one [1]byte
	for {
		n, err := e.r.Read(one[:])
		if n > 0 {
			e.err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, e.size)
			return e.err
		}
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			e.err = err
			return err
		}
	}
}

// SizeError classifies a failed Put whose cause is a size mismatch as
// Invalid; other errors pass through unchanged.
func SizeError(key string, err error) error {
	if errors.Is(err, ErrSizeMismatch) {
		return apperr.Wrap(err, apperr.Invalid, "object %q: body length does not match the declared size", key).WithCode(api.CodeSizeMismatch)
	}
	return err
}
