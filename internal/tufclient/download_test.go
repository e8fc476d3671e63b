package tufclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/tufclient"
)

func target(data []byte) *metadata.TargetFiles {
	h := sha256.Sum256(data)
	return &metadata.TargetFiles{Path: "demo-pump/x.img", Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

func payload(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestDownloadResumesAPartialFileWithARangeRequest(t *testing.T) {
	data := payload(1 << 20)
	var gotRange atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotRange.Store(r.Header.Get("Range"))
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "x.img")
	// An earlier attempt got the first 300 KiB.
	os.WriteFile(dest+tufclient.UnverifiedSuffix, data[:300<<10], 0o600)
	res, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest, tufclient.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if gotRange.Load() != "bytes="+strconv.Itoa(300<<10)+"-" {
		t.Fatalf("Range header %q", gotRange.Load())
	}
	if res.Resumed != 300<<10 || res.Bytes != int64(len(data)-300<<10) {
		t.Fatalf("result %+v", res)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, data) {
		t.Fatal("resumed download differs")
	}
	if _, err := os.Stat(dest + tufclient.UnverifiedSuffix); !os.IsNotExist(err) {
		t.Fatal("the .unverified file remains after success")
	}
}

func TestDownloadStartsOverWhenTheServerIgnoresRange(t *testing.T) {
	data := payload(64 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(data) // 200, whole body, Range ignored
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "x.img")
	os.WriteFile(dest+tufclient.UnverifiedSuffix, []byte("stale partial bytes"), 0o600)
	if _, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest, tufclient.Limits{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, data) {
		t.Fatal("download after an ignored Range differs")
	}
}

func TestDownloadKeepsThePartialFileWhenTheConnectionDrops(t *testing.T) {
	data := payload(256 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:100<<10])
		panic(http.ErrAbortHandler) // cut the connection mid-body
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "x.img")
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest, tufclient.Limits{})
	if err == nil || tufclient.IsVerification(err) {
		t.Fatalf("a dropped connection must be a retryable error, got %v", err)
	}
	st, err := os.Stat(dest + tufclient.UnverifiedSuffix)
	if err != nil || st.Size() != 100<<10 {
		t.Fatalf("partial file: %v %v", st, err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("an unverified download was renamed into place")
	}
}

func TestDownloadRefusesEndlessDataWithoutContentLength(t *testing.T) {
	data := payload(32 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // chunked: no Content-Length to check up front
		w.Write(data)
		w.Write(payload(1 << 20))
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "x.img")
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest, tufclient.Limits{})
	var te *tufclient.Error
	if !errors.As(err, &te) || !strings.Contains(te.Check, "endless data") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(dest + tufclient.UnverifiedSuffix); !os.IsNotExist(err) {
		t.Fatal("endless data left a partial file")
	}
}

func TestDownloadRefusesWrongBytes(t *testing.T) {
	data := payload(32 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evil := bytes.Clone(data)
		evil[0] ^= 1
		w.Write(evil)
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "x.img")
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest, tufclient.Limits{})
	if !tufclient.IsVerification(err) || !strings.Contains(err.Error(), "arbitrary software") {
		t.Fatalf("got %v", err)
	}
	for _, p := range []string{dest, dest + tufclient.UnverifiedSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after a hash mismatch", p)
		}
	}
}

// stallingProxy sends the first half of data, then holds the connection
// open without sending anything until the test ends (or, with trickle, one
// byte at a time); later requests are served whole, with Range.
func stallingProxy(t *testing.T, data []byte, trickle time.Duration) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		for i := len(data) / 2; trickle > 0 && i < len(data); i++ {
			select {
			case <-done:
				return
			case <-r.Context().Done():
				return
			case <-time.After(trickle):
			}
			w.Write(data[i : i+1])
			w.(http.Flusher).Flush()
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv, &calls
}

// Slow retrieval (TUF §5.7.3): a mirror that stops sending after half the
// bytes used to hold the agent forever. The attempt now ends after the idle
// timeout, keeps the partial file, and the next attempt resumes it.
func TestDownloadCutsOffAStalledTransferAndResumesLater(t *testing.T) {
	data := payload(512 << 10)
	srv, calls := stallingProxy(t, data, 0)
	dest := filepath.Join(t.TempDir(), "x.img")
	lim := tufclient.Limits{IdleTimeout: 300 * time.Millisecond}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := tufclient.Download(context.Background(), tufclient.NewHTTPClient(), srv.URL, target(data), dest, lim)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled download still hangs after 30 s")
	}
	if !errors.Is(err, tufclient.ErrSlowRetrieval) || tufclient.IsVerification(err) {
		t.Fatalf("want a retryable slow-retrieval error, got %v after %s", err, time.Since(start))
	}
	st, serr := os.Stat(dest + tufclient.UnverifiedSuffix)
	if serr != nil || st.Size() != int64(len(data)/2) {
		t.Fatalf("the partial file was not kept: %v %v", st, serr)
	}
	res, err := tufclient.Download(context.Background(), tufclient.NewHTTPClient(), srv.URL, target(data), dest, lim)
	if err != nil || res.Resumed != int64(len(data)/2) || calls.Load() != 2 {
		t.Fatalf("resume: %+v %v (%d requests)", res, err, calls.Load())
	}
}

// A trickle of one byte every 20 ms never trips an idle timer; the minimum
// rate over a window cuts it off.
func TestDownloadCutsOffATrickleBelowTheMinimumRate(t *testing.T) {
	data := payload(64 << 10)
	srv, _ := stallingProxy(t, data, 20*time.Millisecond)
	dest := filepath.Join(t.TempDir(), "x.img")
	lim := tufclient.Limits{IdleTimeout: 10 * time.Second, MinRate: 1024, RateWindow: 400 * time.Millisecond}
	_, err := tufclient.Download(context.Background(), tufclient.NewHTTPClient(), srv.URL, target(data), dest, lim)
	if !errors.Is(err, tufclient.ErrSlowRetrieval) || !strings.Contains(err.Error(), "below the minimum") {
		t.Fatalf("got %v", err)
	}
}

// The whole attempt is bounded by the signed length at the minimum rate.
func TestDownloadDeadlineFollowsTheSignedLength(t *testing.T) {
	lim := tufclient.Limits{MinRate: 1 << 20, BaseDeadline: time.Minute}
	if got := lim.Deadline(600 << 20); got != 11*time.Minute {
		t.Fatalf("600 MiB at 1 MiB/s + 1 min: %s", got)
	}
	if got := lim.Deadline(1 << 62); got > 366*24*time.Hour {
		t.Fatalf("a huge signed length overflows the deadline: %s", got)
	}
}

// A target listing sha256 and sha512 has both checked while streaming: a
// wrong sha512 with a right sha256 is refused.
func TestDownloadVerifiesEveryListedHash(t *testing.T) {
	data := payload(40 << 10)
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	defer srv.Close()
	bad512 := bytes.Clone(s512[:])
	bad512[0] ^= 1
	for name, c := range map[string]struct {
		hashes metadata.Hashes
		ok     bool
	}{
		"sha256 only":          {metadata.Hashes{"sha256": s256[:]}, true},
		"sha512 only":          {metadata.Hashes{"sha512": s512[:]}, true},
		"both right":           {metadata.Hashes{"sha256": s256[:], "sha512": s512[:]}, true},
		"sha512 wrong":         {metadata.Hashes{"sha256": s256[:], "sha512": bad512}, false},
		"unknown algorithm":    {metadata.Hashes{"md5": []byte("x")}, false},
		"known and unknown ok": {metadata.Hashes{"sha512": s512[:], "blake9": []byte("x")}, true},
	} {
		tf := &metadata.TargetFiles{Path: "demo-pump/x.img", Length: int64(len(data)), Hashes: c.hashes}
		dest := filepath.Join(t.TempDir(), "x.img")
		_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, tf, dest, tufclient.Limits{})
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", name, err)
		}
		if !c.ok && !tufclient.IsVerification(err) {
			t.Errorf("%s: refused, but not as a verification failure: %v", name, err)
		}
	}
}
