package tufclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/atomicfile"
)

// UnverifiedSuffix marks a download whose hash has not been checked yet.
// Nothing reads such a file except Download itself, to resume it.
const UnverifiedSuffix = ".unverified"

// DownloadResult says what Download did.
type DownloadResult struct {
	Path    string
	Bytes   int64 // bytes fetched in this call
	Resumed int64 // bytes reused from an earlier partial download
}

// Download fetches target tf from url into dest, streaming: the bytes go to
// dest+".unverified" through a SHA-256 hash with a limit of the signed
// length; only when length and hash match is the file fsynced and renamed to
// dest. A partial file from an interrupted download is resumed with an HTTP
// Range request (its bytes are re-hashed first). Memory use does not depend
// on the target's size.
//
// A server that sends more than the signed length (endless data) or bytes
// that do not hash to the signed sha256 (arbitrary software) gets the
// partial file deleted and a *Error naming the check. Network failures keep
// the partial file for the next attempt.
func Download(ctx context.Context, hc *http.Client, url string, tf *metadata.TargetFiles, dest string) (DownloadResult, error) {
	res := DownloadResult{Path: dest}
	want, ok := tf.Hashes["sha256"]
	if !ok {
		return res, &Error{"target hashes", fmt.Errorf("target %s has no sha256", tf.Path)}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return res, err
	}
	partial := dest + UnverifiedSuffix
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return res, err
	}
	defer f.Close()

	h := sha256.New()
	have, err := io.Copy(h, f) // re-hash what an earlier attempt left
	if err != nil {
		return res, err
	}
	if have > tf.Length {
		if err := restart(f, h); err != nil {
			return res, err
		}
		have = 0
	}
	res.Resumed = have

	if have < tf.Length {
		n, restarted, err := fetchInto(ctx, hc, url, f, h, have, tf.Length)
		res.Bytes = n
		if restarted {
			res.Resumed = 0
		}
		if err != nil {
			var ve *Error
			if errors.As(err, &ve) {
				f.Close()
				os.Remove(partial)
			}
			return res, err
		}
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		f.Close()
		os.Remove(partial)
		return res, &Error{"target hash (arbitrary software)", fmt.Errorf("%s: downloaded bytes hash to %x, the signed sha256 is %x", tf.Path, got, []byte(want))}
	}
	if err := f.Sync(); err != nil {
		return res, err
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(partial, dest); err != nil {
		return res, err
	}
	return res, atomicfile.SyncDir(filepath.Dir(dest))
}

func restart(f *os.File, h hash.Hash) error {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// fetchInto appends bytes [have, length) of url to f and h. It returns the
// number of bytes fetched and whether the server made it start over.
func fetchInto(ctx context.Context, hc *http.Client, url string, f *os.File, h hash.Hash, have, length int64) (n int64, restarted bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, restarted, err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, restarted, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(have, 10)+"-") {
			return 0, restarted, fmt.Errorf("%s: server answered Range bytes=%d- with Content-Range %q", url, have, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusOK:
		if have > 0 { // the server ignored the range: start over
			if err := restart(f, h); err != nil {
				return 0, restarted, err
			}
			have, restarted = 0, true
		}
	case resp.StatusCode == http.StatusNotFound:
		return 0, restarted, &Error{"download", fmt.Errorf("%s: 404 not found", url)}
	default:
		return 0, restarted, fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	remaining := length - have
	if resp.ContentLength > remaining {
		return 0, restarted, &Error{"endless data (target length)", fmt.Errorf("%s: server announces %d bytes, the signed length leaves %d", url, resp.ContentLength, remaining)}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return 0, restarted, err
	}
	n, err = copyHashed(f, h, io.LimitReader(resp.Body, remaining))
	if err != nil {
		return n, restarted, err // keep the partial file: resume next time
	}
	if n < remaining {
		return n, restarted, fmt.Errorf("%s: connection ended after %d of %d bytes", url, have+n, length)
	}
	// The signed length is reached: any further byte is endless data.
	var one [1]byte
	if m, _ := resp.Body.Read(one[:]); m > 0 {
		return n, restarted, &Error{"endless data (target length)", fmt.Errorf("%s: server sent more than the signed length of %d bytes", url, length)}
	}
	return n, restarted, nil
}

// Pipeline sizes for copyHashed: buffers in flight and bytes per buffer.
// Their product bounds the memory a download uses (1 MiB).
const (
	copyBuffers    = 4
	copyBufferSize = 256 << 10
)

// copyHashed copies src to dst and feeds the same bytes to h in a second
// goroutine, so hashing overlaps with network and disk I/O instead of
// adding to them.
func copyHashed(dst io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyBufferSize)
	}
	work := make(chan []byte, copyBuffers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range work {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var total int64
	var err error
	for {
		buf := <-free
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
				break
			}
			total += int64(n)
			work <- buf[:n]
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(work)
	<-done
	return total, err
}
