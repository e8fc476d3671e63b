package engine_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/delta"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tuftest"
)

// appBytes is a 768 KiB "application" that two releases share but for a
// few bytes.
func appBytes(edit string) []byte {
	rng := rand.New(rand.NewPCG(9, 9))
	b := make([]byte, 768<<10)
	for i := range b {
		b[i] = byte(rng.IntN(64))
	}
	copy(b[300<<10:], edit)
	return b
}

func tarImage(t *testing.T, version string, app []byte) []byte {
	var img bytes.Buffer
	tw := tar.NewWriter(&img)
	for _, f := range []struct {
		name string
		body []byte
	}{{"VERSION", []byte(version + "\n")}, {"bin/app", app}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.body)
	}
	tw.Close()
	return img.Bytes()
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func custom(version, kind string, mutate func(*release.Custom)) json.RawMessage {
	c := release.Custom{Product: "demo-pump", Version: version, Hardware: []string{"rev-b"}, Kind: kind, Severity: release.SeveritySecurity, Cycle: release.CycleRegular}
	if mutate != nil {
		mutate(&c)
	}
	raw, _ := json.Marshal(c)
	return raw
}

func makeDelta(t *testing.T, base, result []byte) []byte {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "base"), base, 0o600)
	os.WriteFile(filepath.Join(dir, "new"), result, 0o600)
	var d bytes.Buffer
	if _, err := delta.Make(filepath.Join(dir, "base"), filepath.Join(dir, "new"), &d); err != nil {
		t.Fatal(err)
	}
	return d.Bytes()
}

// deltaWorld: a device that installed 1.1.0 (a full image, kept as its
// base), and a repository that then publishes 1.2.0 with a signed delta
// from 1.1.0.
type deltaWorld struct {
	r            *tuftest.Repo
	d            *device
	img11, img12 []byte
	deltaPath    string
	fullPath     string
}

const (
	deltaTarget12 = "demo-pump/demo-pump-1.2.0.tar.from-1.1.0.vdelta"
	fullTarget12  = "demo-pump/demo-pump-1.2.0.tar"
)

func newDeltaWorld(t *testing.T, signedDelta func(w *deltaWorld) []byte) *deltaWorld {
	return newDeltaWorldOf(t, tarImage(t, "1.1.0", appBytes("one")), tarImage(t, "1.2.0", appBytes("two: patched")), signedDelta)
}

// newDeltaWorldOf is newDeltaWorld with the two images given (tar or raw).
func newDeltaWorldOf(t *testing.T, img11, img12 []byte, signedDelta func(w *deltaWorld) []byte) *deltaWorld {
	ctx := context.Background()
	w := &deltaWorld{r: tuftest.New(t), img11: img11, img12: img12, deltaPath: deltaTarget12, fullPath: fullTarget12}
	w.r.Delegate(metadata.TARGETS, "demo-pump", []string{"demo-pump/*"}, true)
	w.r.AddTarget("demo-pump", "demo-pump/demo-pump-1.1.0.tar", w.img11, custom("1.1.0", release.KindFull, nil))
	w.r.Publish()
	w.d = newDevice(t, w.r, true)
	if st := w.d.runToEnd(ctx); st.Phase != journal.Committed || st.Release.Version != "1.1.0" {
		t.Fatalf("installing 1.1.0: %s %s", st.Phase, st.Reason)
	}
	if _, err := os.Stat(filepath.Join(w.d.data, engine.BaseDir, hexSum(w.img11))); err != nil {
		t.Fatalf("the committed image is not kept as the delta base: %v", err)
	}
	w.r.AddTarget("demo-pump", fullTarget12, w.img12, custom("1.2.0", release.KindFull, nil))
	d := makeDelta(t, w.img11, w.img12)
	if signedDelta != nil {
		d = signedDelta(w)
	}
	w.r.AddTarget("demo-pump", deltaTarget12, d, custom("1.2.0", release.KindDelta, func(c *release.Custom) {
		c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = hexSum(w.img11), hexSum(w.img12), int64(len(w.img12))
	}))
	w.r.Publish()
	w.r.Fetched = nil
	return w
}

// tamper serves other bytes of the same length as target path.
func (w *deltaWorld) tamper(path string) {
	n := map[string]int{w.deltaPath: 0, w.fullPath: len(w.img12)}[path]
	if path == w.deltaPath {
		n = int(w.r.Roles["demo-pump"].Signed.Targets[path].Length)
	}
	w.r.Tamper(path, bytes.Repeat([]byte("x"), n))
}

// fetched reports whether the repository served target path.
func (w *deltaWorld) fetched(path string) bool {
	name := path[strings.LastIndex(path, "/")+1:]
	return slices.ContainsFunc(w.r.Fetched, func(p string) bool { return strings.HasSuffix(p, "."+name) })
}

// reasons lists the reasons of the queued events in state s.
func (w *deltaWorld) reasons(t *testing.T, s api.InstallState) []string {
	q, err := events.Open(w.d.data)
	if err != nil {
		t.Fatal(err)
	}
	evs, _, _ := q.Pending()
	var out []string
	for _, e := range evs {
		if e.State == s && e.Version == "1.2.0" {
			out = append(out, e.Reason)
		}
	}
	return out
}

func TestADeviceRebuildsTheReleaseFromItsDeltaAndNeverFetchesTheFullImage(t *testing.T) {
	w := newDeltaWorld(t, nil)
	st := w.d.runToEnd(context.Background())
	if st.Phase != journal.Committed || st.Release.Version != "1.2.0" {
		t.Fatalf("ended %s (%s)", st.Phase, st.Reason)
	}
	checkOneConsistentSlot(t, w.d, slot.A, "1.2.0")
	if w.fetched(w.fullPath) || !w.fetched(w.deltaPath) {
		t.Fatalf("fetched %v: want the delta and not the full image", w.r.Fetched)
	}
	if r := w.reasons(t, journal.Verified); len(r) != 1 || r[0] != "rebuilt from delta "+w.deltaPath {
		t.Fatalf("verified events: %q", r)
	}
	// The new image replaces the old one as the base of the next delta.
	kept, _ := os.ReadDir(filepath.Join(w.d.data, engine.BaseDir))
	if len(kept) != 1 || kept[0].Name() != hexSum(w.img12) {
		t.Fatalf("kept bases: %v", kept)
	}
}

// A raw image (a partition image, one opaque file in the slot) is rebuilt
// bit for bit too.
func TestARawImageIsRebuiltBitForBitFromItsDelta(t *testing.T) {
	img11, img12 := append([]byte("RAW1"), appBytes("one")...), append([]byte("RAW2"), appBytes("two: patched")...)
	w := newDeltaWorldOf(t, img11, img12, nil)
	st := w.d.runToEnd(context.Background())
	if st.Phase != journal.Committed || st.Release.Version != "1.2.0" || w.fetched(w.fullPath) {
		t.Fatalf("ended %s (%s), fetched %v", st.Phase, st.Reason, w.r.Fetched)
	}
	got, err := os.ReadFile(filepath.Join(w.d.slots, "current", slot.SingleFileName))
	if err != nil || !bytes.Equal(got, img12) {
		t.Fatalf("the slot does not hold the signed raw image bit for bit (%v)", err)
	}
}

// Whatever is wrong with a delta, the device falls back to the full image
// by itself, says why in its downloading event, and ends committed on the
// signed full image.
func TestABadDeltaOrBaseFallsBackToTheFullImageWithTheReason(t *testing.T) {
	for name, c := range map[string]struct {
		signed func(w *deltaWorld) []byte // the delta bytes to sign (nil: the right ones)
		before func(t *testing.T, w *deltaWorld)
		reason string
	}{
		"tampered delta": {before: func(t *testing.T, w *deltaWorld) { w.tamper(w.deltaPath) }, reason: "failed verification"},
		"delta for another base": {signed: func(w *deltaWorld) []byte {
			return makeDelta(t, tarImage(t, "1.0.9", appBytes("other")), w.img12)
		}, reason: "another base"},
		"delta that rebuilds another image": {signed: func(w *deltaWorld) []byte {
			return makeDelta(t, w.img11, tarImage(t, "1.2.0", appBytes("not what was signed")))
		}, reason: "not the expected image"},
		"corrupt delta, signed": {signed: func(w *deltaWorld) []byte {
			d := makeDelta(t, w.img11, w.img12)
			return d[:len(d)-20] // a cut-short delta, signed as it is
		}, reason: "malformed"},
		"base changed on disk": {before: func(t *testing.T, w *deltaWorld) {
			p := filepath.Join(w.d.data, engine.BaseDir, hexSum(w.img11))
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			f.WriteAt([]byte("bit rot"), 1000)
			f.Close()
		}, reason: "kept for deltas changed on disk"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newDeltaWorld(t, c.signed)
			if c.before != nil {
				c.before(t, w)
			}
			st := w.d.runToEnd(context.Background())
			if st.Phase != journal.Committed || st.Release.Version != "1.2.0" {
				t.Fatalf("ended %s (%s)", st.Phase, st.Reason)
			}
			checkOneConsistentSlot(t, w.d, slot.A, "1.2.0")
			if !w.fetched(w.fullPath) {
				t.Fatal("the full image was not fetched")
			}
			got := strings.Join(w.reasons(t, journal.Downloading), " | ")
			if !strings.Contains(got, engine.ReasonDeltaFallback) || !strings.Contains(got, c.reason) {
				t.Fatalf("downloading reasons %q, want the fallback naming %q", got, c.reason)
			}
		})
	}
}

// Without a kept base (removed, or a factory image never kept) the device
// does not try the delta; with the full image also bad, it fails naming
// the full image's check.
func TestNoBaseMeansTheFullImageAndABadFullImageStillFails(t *testing.T) {
	w := newDeltaWorld(t, nil)
	os.RemoveAll(filepath.Join(w.d.data, engine.BaseDir))
	if st := w.d.runToEnd(context.Background()); st.Phase != journal.Committed || w.fetched(w.deltaPath) {
		t.Fatalf("without a base: %s, fetched %v", st.Phase, w.r.Fetched)
	}

	w = newDeltaWorld(t, nil)
	w.tamper(w.deltaPath)
	w.tamper(w.fullPath)
	e := w.d.engine()
	if err := e.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e.State(); st.Phase != journal.Failed || !strings.Contains(st.Reason, "hash") {
		t.Fatalf("with the delta and the full image both bad: %s (%s)", st.Phase, st.Reason)
	}
	checkOneConsistentSlot(t, w.d, slot.B, "1.1.0")
}

// A crash at each step of a delta install, then restarts: the device ends
// committed on the new release, one consistent slot, the terminal event once.
func TestACrashAtEveryDeltaStepRecoversToOneConsistentSlot(t *testing.T) {
	for _, at := range []string{"delta-downloaded", "delta-rebuild-mid", "delta-rebuilt"} {
		t.Run("crash-at="+at, func(t *testing.T) {
			ctx := context.Background()
			w := newDeltaWorld(t, nil)
			w.d.armed = at
			e := w.d.engine()
			crashed, err := step(func() error { return e.Check(ctx) })
			if crashed != at {
				t.Fatalf("did not reach failpoint %s (crashed at %q, err %v, phase %s)", at, crashed, err, e.State().Phase)
			}
			st := w.d.runToEnd(ctx)
			if st.Phase != journal.Committed || st.Release.Version != "1.2.0" {
				t.Fatalf("ended %s (%s)", st.Phase, st.Reason)
			}
			checkOneConsistentSlot(t, w.d, slot.A, "1.2.0")
			if w.fetched(w.fullPath) {
				t.Fatalf("a crash during a delta install made it fetch the full image: %v", w.r.Fetched)
			}
			q, _ := events.Open(w.d.data)
			evs, _, _ := q.Pending()
			n := 0
			for _, e := range evs {
				if e.State == journal.Committed && e.Version == "1.2.0" {
					n++
				}
			}
			if n != 1 {
				t.Fatal(fmt.Sprintf("%d committed events for 1.2.0", n))
			}
		})
	}
}
