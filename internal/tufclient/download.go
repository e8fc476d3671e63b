package tufclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/atomicfile"
)

// UnverifiedSuffix marks a download whose hash has not been checked yet.
// Nothing reads such a file except Download itself, to resume it.
const UnverifiedSuffix = ".unverified"

// Slow-retrieval defences (TUF §5.7.3 "slow retrieval attack"), with their
// units. A mirror that stalls, or trickles bytes to hold a device forever,
// is cut off; the partial file stays and the next attempt resumes it.
const (
	// DefaultIdleTimeout: no byte for this long ends the attempt.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMinRate is the slowest average transfer rate accepted over
	// each RateWindow, in bytes per second.
	DefaultMinRate = 4 << 10
	// DefaultRateWindow is the window the rate is averaged over.
	DefaultRateWindow = 60 * time.Second
	// DefaultBaseDeadline is added to the time the signed length takes at
	// the minimum rate to bound one attempt as a whole.
	DefaultBaseDeadline = 5 * time.Minute
	// Transport timeouts for connecting and for the response to start.
	DialTimeout           = 30 * time.Second
	TLSHandshakeTimeout   = 30 * time.Second
	ResponseHeaderTimeout = 60 * time.Second
)

// Limits bound one download attempt; zero fields take the defaults.
type Limits struct {
	IdleTimeout  time.Duration
	MinRate      int64 // bytes per second, averaged over RateWindow
	RateWindow   time.Duration
	BaseDeadline time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MinRate <= 0 {
		l.MinRate = DefaultMinRate
	}
	if l.RateWindow <= 0 {
		l.RateWindow = DefaultRateWindow
	}
	if l.BaseDeadline <= 0 {
		l.BaseDeadline = DefaultBaseDeadline
	}
	return l
}

// Deadline is how long an attempt to fetch n bytes may take in all: the
// base plus n at the minimum rate.
func (l Limits) Deadline(n int64) time.Duration {
	l = l.withDefaults()
	secs := n / l.MinRate
	if secs > int64(365*24*time.Hour/time.Second) {
		secs = int64(365 * 24 * time.Hour / time.Second)
	}
	return l.BaseDeadline + time.Duration(secs)*time.Second
}

// ErrSlowRetrieval marks an attempt cut off for being too slow or stalled.
// It is not a verification failure: the partial file is kept and resumed.
var ErrSlowRetrieval = errors.New("slow retrieval")

// NewHTTPClient returns a client for target downloads: timeouts on connect,
// TLS and the response header, none on the body (Download watches that
// itself, by rate and idleness, so a large image may take its time).
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = TLSHandshakeTimeout
	t.ResponseHeaderTimeout = ResponseHeaderTimeout
	return &http.Client{Transport: t}
}

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
//
// Every hash the metadata lists is checked while the bytes stream (sha256,
// sha512; a target listing only algorithms this client does not know is
// refused). A stalled or trickling transfer (lim) ends the attempt with
// ErrSlowRetrieval, keeping the partial file.
func Download(ctx context.Context, hc *http.Client, url string, tf *metadata.TargetFiles, dest string, lim Limits) (DownloadResult, error) {
	res := DownloadResult{Path: dest}
	hs, err := newHashes(tf)
	if err != nil {
		return res, err
	}
	lim = lim.withDefaults()
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return res, err
	}
	partial := dest + UnverifiedSuffix
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return res, err
	}
	defer f.Close()

	h := hs
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
		n, restarted, err := fetchInto(ctx, hc, url, f, h, have, tf.Length, lim)
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
	if err := hs.check(tf.Path); err != nil {
		f.Close()
		os.Remove(partial)
		return res, err
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

// multiHash feeds every listed algorithm at once.
type multiHash struct {
	algs []string
	hs   []hash.Hash
	want [][]byte
}

// hashAlgorithms are the algorithms this client verifies.
var hashAlgorithms = map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New}

func newHashes(tf *metadata.TargetFiles) (*multiHash, error) {
	m := &multiHash{}
	for alg, want := range tf.Hashes {
		nh, ok := hashAlgorithms[alg]
		if !ok {
			continue
		}
		m.algs, m.hs, m.want = append(m.algs, alg), append(m.hs, nh()), append(m.want, want)
	}
	if len(m.hs) == 0 {
		return nil, &Error{"target hashes", fmt.Errorf("target %s lists no hash this client can verify (sha256, sha512)", tf.Path)}
	}
	return m, nil
}

func (m *multiHash) Write(p []byte) (int, error) {
	for _, h := range m.hs {
		h.Write(p)
	}
	return len(p), nil
}

func (m *multiHash) Reset() {
	for _, h := range m.hs {
		h.Reset()
	}
}

func (m *multiHash) Sum(b []byte) []byte { return m.hs[0].Sum(b) }
func (m *multiHash) Size() int           { return m.hs[0].Size() }
func (m *multiHash) BlockSize() int      { return m.hs[0].BlockSize() }

// check compares every digest with its signed value.
func (m *multiHash) check(path string) error {
	for i, h := range m.hs {
		if got := h.Sum(nil); !bytes.Equal(got, m.want[i]) {
			return &Error{"target hash (arbitrary software)", fmt.Errorf("%s: downloaded bytes hash to %s %x, the signed %s is %x", path, m.algs[i], got, m.algs[i], m.want[i])}
		}
	}
	return nil
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
func fetchInto(ctx context.Context, hc *http.Client, url string, f *os.File, h hash.Hash, have, length int64, lim Limits) (n int64, restarted bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, cancelDeadline := context.WithTimeoutCause(ctx, lim.Deadline(length-have), fmt.Errorf("%w: %s: %d bytes not fetched within %s (%d bytes/s at least)", ErrSlowRetrieval, url, length-have, lim.Deadline(length-have), lim.MinRate))
	defer cancelDeadline()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, restarted, err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, restarted, slowCause(ctx, err)
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
	body := newWatchedReader(resp.Body, lim, func(why error) { cancel(why) })
	defer body.stop()
	n, err = copyHashed(f, h, io.LimitReader(body, remaining))
	if err != nil {
		return n, restarted, slowCause(ctx, err) // keep the partial file: resume next time
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

// slowCause prefers the reason a watchdog cancelled ctx over the transport's
// "context canceled".
func slowCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrSlowRetrieval) {
		return cause
	}
	return err
}

// watchedReader cuts a transfer off (through cancel) when no byte arrives
// for IdleTimeout, or when fewer than MinRate×RateWindow bytes arrive in a
// RateWindow (a trickle that resets any idle timer).
type watchedReader struct {
	r           io.Reader
	lim         Limits
	idle        *time.Timer
	cancel      func(error)
	windowStart time.Time
	windowBytes int64
}

func newWatchedReader(r io.Reader, lim Limits, cancel func(error)) *watchedReader {
	w := &watchedReader{r: r, lim: lim, cancel: cancel, windowStart: time.Now()}
	w.idle = time.AfterFunc(lim.IdleTimeout, func() {
		cancel(fmt.Errorf("%w: no data for %s", ErrSlowRetrieval, lim.IdleTimeout))
	})
	return w
}

func (w *watchedReader) stop() { w.idle.Stop() }

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.idle.Reset(w.lim.IdleTimeout)
		w.windowBytes += int64(n)
	}
	if el := time.Since(w.windowStart); el >= w.lim.RateWindow {
		if rate := float64(w.windowBytes) / el.Seconds(); rate < float64(w.lim.MinRate) {
			why := fmt.Errorf("%w: %.0f bytes/s over the last %s, below the minimum of %d", ErrSlowRetrieval, rate, el.Round(time.Second), w.lim.MinRate)
			w.cancel(why)
			return n, why
		}
		w.windowStart, w.windowBytes = time.Now(), 0
	}
	return n, err
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
