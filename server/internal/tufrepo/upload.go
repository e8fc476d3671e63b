package tufrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Upload stores a target image under its content address,
// targets/PRODUCT/SHA256.FILE, hashing it while it streams. Bytes that do
// not hash to sha256hex, or a body of another length, store nothing. An
// image already stored under the same address is kept (uploads are
// idempotent). The image is invisible to devices until a signed product role
// names it.
func (r *Repo) Upload(ctx context.Context, product, fileName, sha256hex string, length int64, body io.Reader) (stored bool, err error) {
	if err := release.ValidateProduct(product); err != nil {
		return false, invalid("%v", err)
	}
	if err := release.ValidateFileName(fileName); err != nil {
		return false, invalid("%v", err)
	}
	if !sha256Hex.MatchString(sha256hex) {
		return false, invalid("sha256 %q is not 64 lower-case hex digits", sha256hex)
	}
	if length <= 0 {
		return false, invalid("length %d is not a positive number of bytes", length)
	}
	if length > MaxTargetLength {
		return false, apperr.New(apperr.TooLarge, "length %d is over the limit of %d bytes", length, int64(MaxTargetLength))
	}
	if _, err := r.st.RoleVersion(ctx, product); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return false, apperr.New(apperr.NotFound, "product %q is not in the repository; add it with vigil repo add-product", product)
		}
		return false, err
	}
	key := TargetKey(product, sha256hex, fileName)
	if info, err := r.blobs.Stat(ctx, key); err == nil && info.Size == length {
		return false, nil
	} else if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return false, err
	}
	hr := &hashingReader{r: body, h: sha256.New(), want: sha256hex}
	if err := r.blobs.Put(ctx, key, hr, length); err != nil {
		var re *bodyReadError
		if errors.As(err, &re) {
			// The client went away or stalled: its problem, not a
			// server failure (finding 13: no 500, no stack trace).
			if apperr.KindOf(re.err) != apperr.Internal {
				return false, re.err
			}
			return false, apperr.Wrap(re.err, apperr.Invalid, "the upload of %s/%s ended after %d of %d bytes; nothing was stored", product, fileName, hr.n, length).WithCode(api.CodeUploadIncomplete)
		}
		if errors.Is(err, ErrHashMismatch) {
			return false, apperr.Wrap(err, apperr.VerificationFailed, "upload of %s/%s: the bytes hash to %s, not the declared %s; nothing was stored", product, fileName, hr.got, sha256hex).WithCode(api.CodeHashMismatch)
		}
		return false, err
	}
	r.record(ctx, "repo.upload", product+"/"+fileName, map[string]any{"sha256": sha256hex, "length": length})
	return true, nil
}

// hashingReader hashes what passes through and, at the end of the stream,
// fails instead of returning io.EOF when the digest is not the declared one.
// The blob store sees the failure before it commits the object.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	got  string
	n    int64
}

// bodyReadError marks a failure to read the client's body.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the upload: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.n += int64(n)
	if err != nil && err != io.EOF {
		return n, &bodyReadError{err}
	}
	hr.h.Write(p[:n])
	if err == io.EOF {
		hr.got = hex.EncodeToString(hr.h.Sum(nil))
		if hr.got != hr.want {
			return n, fmt.Errorf("%w (got %s)", ErrHashMismatch, hr.got)
		}
	}
	return n, err
}
