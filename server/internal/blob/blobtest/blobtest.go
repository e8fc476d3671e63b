// Package blobtest is the conformance suite every blob.Store backend must
// pass. A backend's test calls Run with a function that returns a fresh,
// empty store.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
)

// LargeObjectSize is the size of the streaming test object: big enough that
// buffering it in memory would show.
const LargeObjectSize = 256 << 20

// maxLargeObjectAlloc bounds the bytes a Put plus Get of the large object may
// allocate: far less than the object, so buffering it whole fails the test.
const maxLargeObjectAlloc = 96 << 20

// Options tune the suite for one backend.
type Options struct {
	// SkipLarge skips the 256 MiB streaming test (for -short runs).
	SkipLarge bool
}

// Run runs the suite. newStore must return an empty store.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store, opts Options) {
	t.Run("PutThenGetReturnsSameBytes", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("MissingKeyIsNotFound", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("OverwriteReplacesWhole", func(t *testing.T) { testOverwrite(t, newStore(t)) })
	t.Run("ShortReaderStoresNothing", func(t *testing.T) { testShortReader(t, newStore(t)) })
	t.Run("LongReaderStoresNothing", func(t *testing.T) { testLongReader(t, newStore(t)) })
	t.Run("FailingReaderKeepsOldObject", func(t *testing.T) { testFailingReader(t, newStore(t)) })
	t.Run("RangedReads", func(t *testing.T) { testRanges(t, newStore(t)) })
	t.Run("ListByPrefixInKeyOrder", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("DeleteIsIdempotent", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("BadKeysAreInvalid", func(t *testing.T) { testBadKeys(t, newStore(t)) })
	t.Run("ConcurrentWritersOfOneKeyLeaveOneWholeObject", func(t *testing.T) { testConcurrentWriters(t, newStore(t)) })
	t.Run("EmptyObject", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("ReadersDuringOverwritesSeeWholeObjects", func(t *testing.T) { testReadDuringOverwrite(t, newStore(t)) })
	t.Run("LargeObjectStreamsWithoutBuffering", func(t *testing.T) {
		if opts.SkipLarge || testing.Short() {
			t.Skip("large object test skipped in -short mode")
		}
		testLarge(t, newStore(t))
	})
}

func ctx(t *testing.T) context.Context { return t.Context() }

func put(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s blob.Store, key string, rng *blob.Range) ([]byte, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(ctx(t), key, rng)
	if err != nil {
		t.Fatalf("Get(%q, %+v): %v", key, rng, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, info
}

func testRoundTrip(t *testing.T, s blob.Store) {
	data := []byte(`{"signed":{"_type":"timestamp"}}`)
	put(t, s, "metadata/timestamp.json", data)
	got, info := get(t, s, "metadata/timestamp.json", nil)
	if !bytes.Equal(got, data) {
		t.Fatalf("got %q, want %q", got, data)
	}
	if info.Size != int64(len(data)) || info.Key != "metadata/timestamp.json" || info.ETag == "" {
		t.Fatalf("bad info %+v", info)
	}
	st, err := s.Stat(ctx(t), "metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != info.Size || st.ETag != info.ETag {
		t.Fatalf("Stat %+v differs from Get's info %+v", st, info)
	}
}

func testMissing(t *testing.T, s blob.Store) {
	if _, err := s.Stat(ctx(t), "metadata/2.root.json"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat missing: got %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx(t), "metadata/2.root.json", nil); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get missing: got %v, want ErrNotFound", err)
	}
	if apperr.KindOf(fmt.Errorf("wrapped: %w", blob.ErrNotFound)) != apperr.NotFound {
		t.Fatal("ErrNotFound is not of kind NotFound")
	}
	// A key below an existing object is missing, not an error.
	put(t, s, "a", []byte("x"))
	if _, err := s.Stat(ctx(t), "a/b"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat below an object: got %v, want ErrNotFound", err)
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "k", []byte("first version, longer"))
	put(t, s, "k", []byte("second"))
	got, _ := get(t, s, "k", nil)
	if string(got) != "second" {
		t.Fatalf("got %q after overwrite", got)
	}
}

func testShortReader(t *testing.T, s blob.Store) {
	err := s.Put(ctx(t), "short", strings.NewReader("abc"), 10)
	if !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("short reader: got %v, want Invalid", err)
	}
	if _, err := s.Stat(ctx(t), "short"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("short reader left an object: %v", err)
	}
}

func testLongReader(t *testing.T, s blob.Store) {
	err := s.Put(ctx(t), "long", strings.NewReader("abcdefghijkl"), 5)
	if !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("long reader: got %v, want Invalid", err)
	}
	if _, err := s.Stat(ctx(t), "long"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("long reader left an object: %v", err)
	}
}

type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	for i := range p {
		p[i] = 'z'
	}
	f.n -= len(p)
	return len(p), nil
}

func testFailingReader(t *testing.T, s blob.Store) {
	put(t, s, "keep", []byte("good"))
	boom := errors.New("upload connection dropped")
	err := s.Put(ctx(t), "keep", &failingReader{n: 100, err: boom}, 1000)
	if err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	got, _ := get(t, s, "keep", nil)
	if string(got) != "good" {
		t.Fatalf("failed Put changed the object to %q", got)
	}
}

func testRanges(t *testing.T, s blob.Store) {
	data := []byte("0123456789abcdefghij")
	put(t, s, "r", data)
	cases := []struct {
		rng  blob.Range
		want string
	}{
		{blob.Range{Offset: 0, Length: -1}, string(data)},
		{blob.Range{Offset: 5, Length: -1}, string(data[5:])},
		{blob.Range{Offset: 5, Length: 3}, "567"},
		{blob.Range{Offset: 18, Length: 100}, "ij"},
		{blob.Range{Offset: 19, Length: 1}, "j"},
	}
	for _, c := range cases {
		got, info := get(t, s, "r", &c.rng)
		if string(got) != c.want {
			t.Errorf("range %+v: got %q, want %q", c.rng, got, c.want)
		}
		if info.Size != int64(len(data)) {
			t.Errorf("range %+v: info.Size %d, want the whole object's %d", c.rng, info.Size, len(data))
		}
	}
	if _, _, err := s.Get(ctx(t), "r", &blob.Range{Offset: 20, Length: 1}); !apperr.Is(err, apperr.OutOfRange) {
		t.Errorf("range past the end: got %v, want OutOfRange", err)
	}
	if _, _, err := s.Get(ctx(t), "r", &blob.Range{Offset: -1, Length: 1}); !apperr.Is(err, apperr.Invalid) {
		t.Errorf("negative range: got %v, want Invalid", err)
	}
}

func testList(t *testing.T, s blob.Store) {
	for _, k := range []string{"metadata/2.demo-pump.json", "metadata/1.root.json", "targets/demo-pump/aa.img", "metadata/timestamp.json", "metadatax"} {
		put(t, s, k, []byte(k))
	}
	var keys []string
	for info, err := range s.List(ctx(t), "metadata/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
		if info.Size != int64(len(info.Key)) {
			t.Errorf("%s: size %d", info.Key, info.Size)
		}
	}
	want := "metadata/1.root.json metadata/2.demo-pump.json metadata/timestamp.json"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("List(metadata/) = %s, want %s", got, want)
	}
	n := 0
	for _, err := range s.List(ctx(t), "") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("List(\"\") saw %d objects, want 5", n)
	}
	for _, err := range s.List(ctx(t), "nothing-here/") {
		t.Fatalf("List of an empty prefix yielded (%v)", err)
	}
	// Breaking out early must not hang or panic.
	for range s.List(ctx(t), "") {
		break
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, "d/x", []byte("x"))
	if err := s.Delete(ctx(t), "d/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx(t), "d/x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if err := s.Delete(ctx(t), "d/x"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func testBadKeys(t *testing.T, s blob.Store) {
	for _, k := range []string{"", "/abs", "a//b", "../escape", "a/../b", "a/./b", "back\\slash", "nul\x00", "trailing/", strings.Repeat("k", blob.MaxKeyLength+1)} {
		if err := s.Put(ctx(t), k, strings.NewReader("x"), 1); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("Put(%q): got %v, want Invalid", k, err)
		}
		if _, err := s.Stat(ctx(t), k); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("Stat(%q): got %v, want Invalid", k, err)
		}
	}
}

func testConcurrentWriters(t *testing.T, s blob.Store) {
	const writers = 8
	const size = 256 << 10
	payloads := make([][]byte, writers)
	for i := range payloads {
		payloads[i] = bytes.Repeat([]byte{byte('A' + i)}, size)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Put(ctx(t), "same/key", bytes.NewReader(payloads[i]), size)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	got, _ := get(t, s, "same/key", nil)
	if len(got) != size {
		t.Fatalf("object has %d bytes, want %d", len(got), size)
	}
	if !bytes.Equal(got, bytes.Repeat(got[:1], size)) {
		t.Fatal("object mixes bytes of different writers")
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	put(t, s, "empty", nil)
	got, info := get(t, s, "empty", nil)
	if len(got) != 0 || info.Size != 0 {
		t.Fatalf("empty object: %d bytes, info %+v", len(got), info)
	}
}

// patternReader yields n pseudo-random bytes without holding them.
type patternReader struct {
	rng *rand.ChaCha8
	n   int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.rng.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

func newPattern(n int64) *patternReader {
	return &patternReader{rng: rand.NewChaCha8([32]byte{'v', 'i', 'g', 'i', 'l'}), n: n}
}

func testLarge(t *testing.T, s blob.Store) {
	h := sha256.New()
	if _, err := io.Copy(h, newPattern(LargeObjectSize)); err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	if err := s.Put(ctx(t), "targets/large.img", newPattern(LargeObjectSize), LargeObjectSize); err != nil {
		t.Fatalf("Put large: %v", err)
	}
	rc, info, err := s.Get(ctx(t), "targets/large.img", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n != LargeObjectSize || info.Size != LargeObjectSize {
		t.Fatalf("read %d bytes, info.Size %d, want %d", n, info.Size, LargeObjectSize)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		t.Fatal("large object came back with different bytes")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Put+Get of %d MiB allocated %d MiB in total", LargeObjectSize>>20, alloc>>20)
	if alloc > maxLargeObjectAlloc {
		t.Fatalf("Put+Get of %d MiB allocated %d MiB: the object is being buffered (limit %d MiB)", LargeObjectSize>>20, alloc>>20, maxLargeObjectAlloc>>20)
	}

	// A ranged read from the middle of the large object.
	const off = 200 << 20
	rc, _, err = s.Get(ctx(t), "targets/large.img", &blob.Range{Offset: off, Length: 4096})
	if err != nil {
		t.Fatal(err)
	}
	part, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	ref := newPattern(LargeObjectSize)
	io.CopyN(io.Discard, ref, off)
	wantPart := make([]byte, 4096)
	io.ReadFull(ref, wantPart)
	if !bytes.Equal(part, wantPart) {
		t.Fatal("ranged read of the large object returned wrong bytes")
	}
}

// testReadDuringOverwrite reads a key while it is being replaced, as
// devices read timestamp.json during a publish: every read must return one
// whole version with the length its Info announced.
func testReadDuringOverwrite(t *testing.T, s blob.Store) {
	const rounds = 200
	versions := [][]byte{bytes.Repeat([]byte("a"), 600), bytes.Repeat([]byte("b"), 700)}
	put(t, s, "metadata/timestamp.json", versions[0])
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range rounds {
			v := versions[i%2]
			if err := s.Put(ctx(t), "metadata/timestamp.json", bytes.NewReader(v), int64(len(v))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads == 0 {
				t.Fatal("no read overlapped the writes")
			}
			return
		default:
		}
		rc, info, err := s.Get(ctx(t), "metadata/timestamp.json", nil)
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %d broke off: %v", reads, err)
		}
		if int64(len(b)) != info.Size || !(bytes.Equal(b, versions[0]) || bytes.Equal(b, versions[1])) {
			t.Fatalf("read %d: %d bytes (info says %d), not one whole version", reads, len(b), info.Size)
		}
	}
}
