package slot_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
)

// entry is one tar member: a file (body), a symlink (link) or a directory.
type entry struct {
	name, body, link string
	dir              bool
}

func tarOf(entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		switch {
		case e.dir:
			tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeDir})
		case e.link != "":
			tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: tar.TypeSymlink})
		default:
			tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// jail is a directory holding the slot root, so that anything written
// outside the slots shows up in it.
type jail struct {
	outer string
	d     *slot.Dir
}

func newJail(t testing.TB) *jail {
	return newJailIn(t, t.TempDir())
}

// newMemJail puts the jail on a memory filesystem when there is one:
// fuzzing runs thousands of unpacks, and what it proves does not depend on
// fsync reaching a disk.
func newMemJail(t testing.TB) *jail {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "vigil-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return newJailIn(t, dir)
		}
	}
	return newJail(t)
}

func newJailIn(t testing.TB, outer string) *jail {
	d := &slot.Dir{Root: filepath.Join(outer, "slots")}
	if err := d.Provision(journal.Release{Target: "factory", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	return &jail{outer: outer, d: d}
}

func (j *jail) write(t testing.TB, img []byte, rel journal.Release) error {
	p := filepath.Join(j.outer, "image")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	return j.d.Write(t.Context(), slot.B, p, rel)
}

// escaped lists what exists in the jail outside the slot root and the image.
func (j *jail) escaped(t testing.TB) []string {
	var out []string
	filepath.WalkDir(j.outer, func(p string, de fs.DirEntry, err error) error {
		if p == j.outer || p == filepath.Join(j.outer, "image") {
			return nil
		}
		if p == j.d.Root {
			return filepath.SkipDir
		}
		out = append(out, p)
		return nil
	})
	// Anything a link chain could reach above the jail, too.
	if _, err := os.Stat(filepath.Join(filepath.Dir(j.outer), "FILE")); err == nil {
		out = append(out, filepath.Join(filepath.Dir(j.outer), "FILE"))
	}
	return out
}

// linksStayInside checks every symlink of slot b with the kernel's own
// resolution: each must lead inside the slot.
func (j *jail) linksStayInside(t testing.TB) {
	slotDir := filepath.Join(j.d.Root, slot.B)
	real, _ := filepath.EvalSymlinks(slotDir)
	filepath.WalkDir(slotDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		to, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil // dangling inside the slot: harmless
		}
		if to != real && !strings.HasPrefix(to, real+string(filepath.Separator)) {
			t.Errorf("symlink %s resolves to %s, outside the slot", p, to)
		}
		return nil
	})
}

var rel = journal.Release{Target: "demo-pump/x.tar", Version: "2.0.0"}

// The reviewed attack: a chain of links each of which looks harmless, so
// that b/c/FILE lands two levels above the slot.
func TestUnpackRefusesTheSymlinkChainThatEscapedTheSlot(t *testing.T) {
	j := newJail(t)
	img := tarOf([]entry{{name: "a", link: "."}, {name: "a/b", link: ".."}, {name: "b/FILE", body: "pwned"}, {name: "b/c", link: ".."}, {name: "b/c/FILE", body: "pwned"}})
	err := j.write(t, img, rel)
	if err == nil || !strings.Contains(err.Error(), "leaves the slot") {
		t.Fatalf("the chain was accepted or refused for the wrong reason: %v", err)
	}
	if out := j.escaped(t); len(out) > 0 {
		t.Fatalf("files outside the slot: %v", out)
	}
	if _, err := j.d.Installed(t.Context(), slot.B); err == nil {
		t.Fatal("a refused image counts as installed")
	}
}

// Chains of every depth from 1 to 8, climbing one level per link, in the
// order an attacker would write them and reversed.
func TestUnpackRefusesLinkChainsOfEveryDepthAndOrder(t *testing.T) {
	for depth := 1; depth <= 8; depth++ {
		var es []entry
		prefix := ""
		for i := range depth {
			es = append(es, entry{name: prefix + fmt.Sprintf("l%d", i), link: ".."})
			prefix += fmt.Sprintf("l%d/", i)
		}
		es = append(es, entry{name: prefix + "FILE", body: "pwned"})
		for _, order := range []string{"forward", "reverse"} {
			img := es
			if order == "reverse" {
				img = append([]entry(nil), es...)
				for i, k := 0, len(img)-1; i < k; i, k = i+1, k-1 {
					img[i], img[k] = img[k], img[i]
				}
			}
			j := newJail(t)
			if err := j.write(t, tarOf(img), rel); err == nil {
				t.Errorf("depth %d %s: accepted", depth, order)
			}
			if out := j.escaped(t); len(out) > 0 {
				t.Fatalf("depth %d %s: files outside the slot: %v", depth, order, out)
			}
		}
	}
}

// A link that is harmless when written can be turned outward by a later
// one; and links that loop.
func TestUnpackRefusesLinksThatLaterLinksTurnOutward(t *testing.T) {
	for name, img := range map[string][]entry{
		"later link":     {{name: "x", link: "y/.."}, {name: "y", link: "."}},
		"later deep":     {{name: "d/x", link: "../y/../.."}, {name: "y", link: "d"}, {name: "d/keep", body: "k"}},
		"loop":           {{name: "p", link: "q"}, {name: "q", link: "p"}},
		"through a link": {{name: "lib", link: "usr/lib"}, {name: "usr/lib/x", body: "x"}, {name: "lib/y", body: "y"}},
		"dir over link":  {{name: "a", link: "."}, {name: "a", dir: true}},
		"duplicate file": {{name: "f", body: "1"}, {name: "f", body: "2"}},
		"absolute link":  {{name: "etc/passwd", link: "/etc/passwd"}},
		"backslash":      {{name: `..\evil`, body: "x"}},
	} {
		j := newJail(t)
		if err := j.write(t, tarOf(img), rel); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if out := j.escaped(t); len(out) > 0 {
			t.Fatalf("%s: files outside the slot: %v", name, out)
		}
	}
}

// Links that stay inside, written in any order, are kept.
func TestUnpackKeepsLinksThatStayInside(t *testing.T) {
	j := newJail(t)
	img := tarOf([]entry{{name: "usr/lib/libc.so.6", body: "elf"}, {name: "usr/lib/libc.so", link: "libc.so.6"}, {name: "lib", link: "usr/lib"},
		{name: "bin/sh", link: "../usr/bin/busybox"}, {name: "usr/bin/busybox", body: "bb"}, {name: "etc/x/up", link: "../.."}})
	if err := j.write(t, img, rel); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(j.d.Root, "b", "lib", "libc.so"))
	if err != nil || string(got) != "elf" {
		t.Fatalf("lib/libc.so: %q %v", got, err)
	}
	j.linksStayInside(t)
}

// Random images from an alphabet of names and link targets built to find
// escapes: whatever the order, nothing is ever written outside the slot,
// and an accepted image's links all resolve inside it (by the kernel).
func TestUnpackNeverWritesOutsideTheSlotForRandomLinkImages(t *testing.T) {
	names := []string{"a", "b", "c", "a/b", "a/c", "b/c", "a/b/c", "d/e"}
	targets := []string{".", "..", "../..", "a", "b", "a/..", "b/../..", "c/..", "../a", "d"}
	r := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same images every run
	for i := range 200 {
		var es []entry
		for range 2 + r.IntN(5) {
			n := names[r.IntN(len(names))]
			if r.IntN(3) == 0 {
				es = append(es, entry{name: n + "/FILE", body: "pwned"})
			} else {
				es = append(es, entry{name: n, link: targets[r.IntN(len(targets))]})
			}
		}
		es = append(es, entry{name: "FILE", body: "inside"})
		j := newJail(t)
		err := j.write(t, tarOf(es), rel)
		if out := j.escaped(t); len(out) > 0 {
			t.Fatalf("image %d %+v: files outside the slot: %v", i, es, out)
		}
		if err == nil {
			j.linksStayInside(t)
		}
	}
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	gw.Write(b)
	gw.Close()
	return buf.Bytes()
}

// A small signed archive that unpacks to far more than its size: refused
// unless the release signs that size, and refused past a signed size.
func TestUnpackBoundsDecompressionBombs(t *testing.T) {
	const unpacked = 8 << 20
	bomb := gzipped(tarOf([]entry{{name: "zeros", body: string(make([]byte, unpacked))}}))
	if len(bomb)*slot.DefaultMaxUnpackRatio >= unpacked {
		t.Fatalf("test image compresses too little (%d bytes) to be a bomb", len(bomb))
	}
	j := newJail(t)
	if err := j.write(t, bomb, rel); err == nil || !strings.Contains(err.Error(), "unpacks to more than") {
		t.Fatalf("a %d-byte archive unpacking to %d bytes was not refused: %v", len(bomb), unpacked, err)
	}
	signed := rel
	signed.UnpackedLength = unpacked - 1
	if err := j.write(t, bomb, signed); err == nil || !strings.Contains(err.Error(), "signed unpacked_length") {
		t.Fatalf("an archive over its signed unpacked_length was not refused: %v", err)
	}
	signed.UnpackedLength = unpacked
	if err := j.write(t, bomb, signed); err != nil {
		t.Fatalf("an archive within its signed unpacked_length was refused: %v", err)
	}
	signed.UnpackedLength = 1 << 62 // more than any disk has
	if err := j.write(t, bomb, signed); err == nil || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("an image larger than the free space was not refused before unpacking: %v", err)
	}
}
