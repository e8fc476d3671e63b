package delta_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/internal/delta"
)

// images returns a base of n pseudo-random bytes (compressible like code:
// built from a small vocabulary) and a patched copy: three regions
// replaced by new bytes of other lengths (shifting everything after them),
// one small edit, and a tail appended.
func images(n int, seed uint64) (base, patched []byte) {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 512)
	for i := range words {
		words[i] = make([]byte, 4+rng.IntN(12))
		for j := range words[i] {
			words[i][j] = byte(rng.IntN(256))
		}
	}
	for len(base) < n {
		base = append(base, words[rng.IntN(len(words))]...)
	}
	base = base[:n]
	patched = append([]byte(nil), base...)
	replace := func(at, oldLen, newLen int) {
		fresh := make([]byte, newLen)
		for i := range fresh {
			fresh[i] = byte(rng.IntN(256))
		}
		patched = append(patched[:at:at], append(fresh, patched[at+oldLen:]...)...)
	}
	replace(n/5, 40<<10, 50<<10)
	replace(n/2, 100<<10, 90<<10)
	replace(4*n/5, 10<<10, 10<<10)
	copy(patched[n/3:], []byte("ssl_protocols TLSv1.3;"))
	patched = append(patched, bytes.Repeat([]byte("tail"), 4096)...)
	return base, patched
}

func write(t testing.TB, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func expect(base, result []byte) delta.Expect {
	return delta.Expect{BaseSHA256: sum(base), BaseLength: int64(len(base)), ResultSHA256: sum(result), ResultLength: int64(len(result))}
}

func makeDelta(t testing.TB, base, patched []byte) ([]byte, delta.Stats) {
	dir := t.TempDir()
	var d bytes.Buffer
	st, err := delta.Make(write(t, dir, "base", base), write(t, dir, "new", patched), &d)
	if err != nil {
		t.Fatal(err)
	}
	return d.Bytes(), st
}

func TestTheRebuiltImageIsTheNewImageBitForBit(t *testing.T) {
	base, patched := images(8<<20, 1)
	d, st := makeDelta(t, base, patched)
	var out bytes.Buffer
	h, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(d), &out, expect(base, patched))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), patched) || h.ResultSHA256 != sum(patched) || st.Bytes != int64(len(d)) {
		t.Fatal("the rebuilt image differs from the new image")
	}
	// About 170 KiB changed of 8 MiB: the delta must be a small part of it.
	if len(d) > 600<<10 || st.CopyBytes < int64(len(patched))*3/4 {
		t.Fatalf("delta %d bytes, %d copied of %d", len(d), st.CopyBytes, len(patched))
	}
	t.Logf("8 MiB image, ~170 KiB changed: delta %d bytes, %d copied, %d as data", len(d), st.CopyBytes, st.DataBytes)
}

func TestEmptyAndUnrelatedImagesStillRebuildExactly(t *testing.T) {
	a, _ := images(300<<10, 2)
	b, _ := images(300<<10, 3)
	for name, c := range map[string][2][]byte{
		"empty base":   {nil, a},
		"empty result": {a, nil},
		"both empty":   {nil, nil},
		"unrelated":    {a, b},
		"identical":    {a, a},
		"one byte":     {a, []byte{1}},
	} {
		d, _ := makeDelta(t, c[0], c[1])
		var out bytes.Buffer
		if _, err := delta.Apply(bytes.NewReader(c[0]), bytes.NewReader(d), &out, expect(c[0], c[1])); err != nil || !bytes.Equal(out.Bytes(), c[1]) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A delta for another base, or for another result than the signed one, is
// refused before anything is written.
func TestADeltaForAnotherBaseOrResultIsRefusedBeforeWriting(t *testing.T) {
	base, patched := images(1<<20, 4)
	d, _ := makeDelta(t, base, patched)
	other := append([]byte(nil), base...)
	other[0] ^= 1
	var out bytes.Buffer
	if _, err := delta.Apply(bytes.NewReader(other), bytes.NewReader(d), &out, expect(other, patched)); !errors.Is(err, delta.ErrWrongBase) || out.Len() != 0 {
		t.Fatalf("another base: %v, %d bytes written", err, out.Len())
	}
	notSigned := append([]byte(nil), patched...)
	notSigned[5] ^= 1
	if _, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(d), &out, expect(base, notSigned)); !errors.Is(err, delta.ErrResultMismatch) || out.Len() != 0 {
		t.Fatalf("another result: %v, %d bytes written", err, out.Len())
	}
}

// The device's base changed on disk after its hash was recorded: the
// rebuilt bytes do not hash to the signed image, and Apply says so.
func TestABaseThatChangedOnDiskEndsInAMismatch(t *testing.T) {
	base, patched := images(2<<20, 5)
	d, _ := makeDelta(t, base, patched)
	changed := append([]byte(nil), base...)
	copy(changed[len(changed)/10:], "corrupted on disk")
	var out bytes.Buffer
	if _, err := delta.Apply(bytes.NewReader(changed), bytes.NewReader(d), &out, expect(base, patched)); !errors.Is(err, delta.ErrResultMismatch) {
		t.Fatalf("changed base: %v", err)
	}
	short := base[:len(base)/2]
	if _, err := delta.Apply(bytes.NewReader(short), bytes.NewReader(d), &out, expect(base, patched)); err == nil {
		t.Fatal("a truncated base was accepted")
	}
}

// Every cut and every flipped byte of a real delta ends in an error, never
// in an accepted wrong image.
func TestCutOrFlippedDeltasAreRefused(t *testing.T) {
	base, patched := images(512<<10, 6)
	d, _ := makeDelta(t, base, patched)
	want := expect(base, patched)
	step := max(1, len(d)/300)
	for cut := 0; cut < len(d); cut += step {
		if _, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(d[:cut]), &bytes.Buffer{}, want); err == nil {
			t.Fatalf("cut at %d of %d accepted", cut, len(d))
		}
	}
	for i := 0; i < len(d); i += step {
		bad := append([]byte(nil), d...)
		bad[i] ^= 0x41
		var out bytes.Buffer
		if _, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(bad), &out, want); err == nil && !bytes.Equal(out.Bytes(), patched) {
			t.Fatalf("flip at %d accepted a wrong image", i)
		}
	}
	if _, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(append(append([]byte(nil), d...), 'x')), &bytes.Buffer{}, want); !errors.Is(err, delta.ErrMalformed) {
		t.Fatalf("trailing bytes: %v", err)
	}
}

// Hand-made hostile deltas: each limit is enforced where the bytes are read.
func TestHostileDeltasAreRefusedByName(t *testing.T) {
	base := bytes.Repeat([]byte("base"), 1<<16)
	result := []byte("result")
	hdr := func(resultLen int64) string {
		return delta.Magic + `{"base_sha256":"` + sum(base) + `","base_length":` + strconv.Itoa(len(base)) +
			`,"result_sha256":"` + sum(result) + `","result_length":` + strconv.FormatInt(resultLen, 10) + "}\n"
	}
	uv := func(vs ...uint64) string {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return string(b)
	}
	want := expect(base, result)
	for name, c := range map[string]struct{ d, msg string }{
		"no magic":             {"vigil-delta-v0\n{}\n", "does not start"},
		"huge header":          {delta.Magic + `{"x":"` + strings.Repeat("a", delta.MaxHeaderBytes) + "\"}\n", "longer than"},
		"unknown header field": {delta.Magic + `{"evil":1}` + "\n", "not valid JSON"},
		"bad hash":             {delta.Magic + `{"base_sha256":"zz","base_length":1,"result_sha256":"zz","result_length":1}` + "\n", "out of range"},
		"copy past the base":   {hdr(6) + "C" + uv(uint64(len(base))-2, 6), "outside"},
		"copy offset overflow": {hdr(6) + "C" + uv(1<<63, 1<<63), "outside"},
		"copy past the result": {hdr(6) + "C" + uv(0, 7), "past the result"},
		"huge dictionary":      {hdr(6) + "D" + uv(0, delta.MaxDictBytes+1, 6, 10), "dictionary"},
		"huge chunk":           {hdr(6) + "D" + uv(0, 0, delta.MaxChunkBytes+1, 10), "data chunk of"},
		"huge compressed":      {hdr(6) + "D" + uv(0, 0, 6, delta.MaxCompressedBytes+1), "compressed bytes"},
		"dictionary outside":   {hdr(6) + "D" + uv(uint64(len(base)), 1, 6, 10), "outside"},
		"not zstd":             {hdr(6) + "D" + uv(0, 0, 6, 4) + "abcd", "does not decompress"},
		"cut-short number":     {hdr(6) + "C" + "\xff\xff", "cut-short number"},
		"no END":               {hdr(6), "before its END"},
		"unknown op":           {hdr(6) + "X", "unknown op"},
	} {
		_, err := delta.Apply(bytes.NewReader(base), strings.NewReader(c.d), &bytes.Buffer{}, want)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v (want %q)", name, err, c.msg)
		}
	}
}

// FuzzApply: whatever the delta bytes, Apply either refuses them or writes
// exactly the expected image; it never panics or allocates beyond its
// bounds.
func FuzzApply(f *testing.F) {
	base, patched := images(200<<10, 7)
	d, _ := makeDelta(f, base, patched)
	f.Add(d)
	f.Add(d[:len(d)/2])
	f.Add([]byte(delta.Magic + "{}\n"))
	want := expect(base, patched)
	f.Fuzz(func(t *testing.T, d []byte) {
		var out bytes.Buffer
		if _, err := delta.Apply(bytes.NewReader(base), bytes.NewReader(d), &out, want); err == nil && !bytes.Equal(out.Bytes(), patched) {
			t.Fatal("a delta was accepted whose result is not the expected image")
		}
	})
}
