package tufclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	res, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest)
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
	if _, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest); err != nil {
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
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest)
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
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest)
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
	_, err := tufclient.Download(context.Background(), srv.Client(), srv.URL, target(data), dest)
	if !tufclient.IsVerification(err) || !strings.Contains(err.Error(), "arbitrary software") {
		t.Fatalf("got %v", err)
	}
	for _, p := range []string{dest, dest + tufclient.UnverifiedSuffix} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after a hash mismatch", p)
		}
	}
}
