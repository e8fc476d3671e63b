package delta_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/vigil-ota/vigil/internal/delta"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// Inputs of the delta benchmark, with their units.
const (
	benchImageBytes  = 256 << 20 // the ext4 image
	benchLibBytes    = 170 << 20 // shared libraries copied into its tree
	benchMinFiles    = 3000      // files in its tree (documentation fills up)
	benchPatchedLibs = 3         // libraries a "security patch" replaces
	benchInsertBytes = 2000      // bytes inserted into each (shifting the rest)
	benchRewrites    = 24        // 512-byte regions rewritten in each
	benchFixedTime   = 1_700_000_000
	benchFixedUUID   = "6f2b1c5e-8d1a-4e0b-9a57-3c2d9e4f7a10"
	benchLibraryFrom = "/usr/lib/x86_64-linux-gnu"
	benchDocsFrom    = "/usr/share/doc"
)

// BenchmarkDeltaExt4SecurityPatch compares delta methods on the input the
// delta issue names: a 256 MiB ext4 image (mkfs.ext4 -d) of a tree of a few
// thousand files (this machine's shared libraries and documentation), and
// the same image after a "security patch" that replaces three ~1 MiB
// shared libraries and edits one config file — the libraries either
// rebuilt (2,000 bytes inserted, 24 regions rewritten) or replaced by
// other libraries of about the same size (nothing of them to reuse).
// Reported: the full image compressed with zstd -19, our delta, a
// casync-style chunk store (the new image's chunks the base lacks, each
// zstd-compressed, plus the index), zstd --patch-from; publish time, apply
// time and peak RSS (apply in a process of its own), and the time to
// download the full image over loopback. docs/benchmarks.md has the figures.
func BenchmarkDeltaExt4SecurityPatch(b *testing.B) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		b.Skip("mkfs.ext4 (Debian's e2fsprogs) is not installed")
	}
	if _, err := os.Stat(benchLibraryFrom); err != nil {
		b.Skip(benchLibraryFrom + " is missing")
	}
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	libs, spares := buildTree(b, tree)
	img1 := filepath.Join(dir, "v1.img")
	mkfsImage(b, mkfs, tree, img1)
	root, err := testsvc.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	tool := filepath.Join(dir, "deltaapply")
	build := exec.Command("go", "build", "-o", tool, "./test/cmd/deltaapply")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build deltaapply: %v\n%s", err, out)
	}
	// rebuilt: each library rebuilt (2,000 bytes inserted, 24 regions
	// rewritten); replaced: each library's bytes replaced by another
	// library of about the same size (the worst case: nothing to reuse).
	for _, mode := range []string{"rebuilt-libraries", "replaced-libraries"} {
		b.Run(mode, func(b *testing.B) {
			sub := b.TempDir()
			patched, img2 := filepath.Join(sub, "patched"), filepath.Join(sub, "v2.img")
			patchTree(b, tree, patched, libs, spares, mode == "replaced-libraries")
			mkfsImage(b, mkfs, patched, img2)
			want := fileSHA256(b, img2)
			for b.Loop() {
				compare(b, sub, tool, img1, img2, want)
			}
		})
	}
}

func mkfsImage(b *testing.B, mkfs, src, img string) {
	cmd := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-U", benchFixedUUID, "-E", "root_owner=0:0,hash_seed="+benchFixedUUID, "-d", src, img, fmt.Sprint(benchImageBytes>>10)+"k")
	cmd.Env = append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", benchFixedTime))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
}

// compare measures every method on one pair of images.
func compare(b *testing.B, dir, tool, img1, img2, want string) {
	full := zstdFull(b, img2)
	b.ReportMetric(float64(full)/(1<<20), "full-zstd19-MiB")

	t0 := time.Now()
	df := filepath.Join(dir, "v2.vdelta")
	f, _ := os.Create(df)
	st, err := delta.Make(img1, img2, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "publish-s")
	b.ReportMetric(float64(st.Bytes)/(1<<20), "delta-MiB")
	b.ReportMetric(100*float64(st.Bytes)/float64(full), "delta-%-of-full")

	out := filepath.Join(dir, "rebuilt.img")
	secs, rss := measure(b, tool, img1, df, out, want)
	if fileSHA256(b, out) != want {
		b.Fatal("the rebuilt image is not the new image")
	}
	b.ReportMetric(secs, "apply-s")
	b.ReportMetric(float64(rss)/(1<<20), "apply-rss-MiB")
	b.ReportMetric(downloadSeconds(b, img2), "full-download-s")

	cas := casyncSize(b, img1, img2)
	b.ReportMetric(100*float64(cas)/float64(full), "casync-%-of-full")
	if p, prss, ok := patchFrom(b, dir, img1, img2); ok {
		b.ReportMetric(100*float64(p)/float64(full), "zstd-patch-from-%-of-full")
		b.ReportMetric(float64(prss)/(1<<20), "zstd-patch-from-apply-rss-MiB")
	}
}

// buildTree copies libraries, then documentation, into dir with fixed
// times, and returns the libraries a patch may change and as many other
// libraries of about their size, left out of the tree.
func buildTree(b *testing.B, dir string) ([]string, [][]byte) {
	var libs []string
	var spares [][]byte
	var total int64
	files := 0
	copyFrom := func(from, to string, budget func(int64) bool) {
		var paths []string
		filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				paths = append(paths, p)
			}
			return nil
		})
		sort.Strings(paths)
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if !budget(fi.Size()) {
				if strings.Contains(p, ".so") && fi.Size() > 700<<10 && fi.Size() < 1500<<10 && len(spares) < benchPatchedLibs {
					if data, err := os.ReadFile(p); err == nil {
						spares = append(spares, data)
					}
				}
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			dst := filepath.Join(dir, to, strings.TrimPrefix(p, from))
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				b.Fatal(err)
			}
			total += fi.Size()
			files++
			if strings.Contains(p, ".so") && fi.Size() > 700<<10 && fi.Size() < 1500<<10 && len(libs) < benchPatchedLibs {
				libs = append(libs, dst)
			}
		}
	}
	copyFrom(benchLibraryFrom, "usr/lib", func(n int64) bool { return total+n <= benchLibBytes })
	copyFrom(benchDocsFrom, "usr/share/doc", func(n int64) bool { return files < benchMinFiles && n < 256<<10 })
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	conf := "# pump web service\nlisten 0.0.0.0:443\nssl_protocols TLSv1.2 TLSv1.3;\nssl_ciphers HIGH:!aNULL:!MD5;\n" + strings.Repeat("# padding line\n", 100)
	if err := os.WriteFile(filepath.Join(dir, "etc", "pump.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	if len(libs) < benchPatchedLibs || len(spares) < benchPatchedLibs {
		b.Skipf("found %d+%d libraries of 0.7–1.5 MiB in %s, need %d each", len(libs), len(spares), benchLibraryFrom, benchPatchedLibs)
	}
	fixTimes(b, dir)
	b.Logf("tree: %d files, %d MiB", files+1, total>>20)
	return libs, spares
}

// patchTree copies tree to dst and applies the "security patch": each
// library rebuilt, or replaced by a spare.
func patchTree(b *testing.B, tree, dst string, libs []string, spares [][]byte, replace bool) {
	if out, err := exec.Command("cp", "-a", tree, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	for i, lib := range libs {
		data, _ := os.ReadFile(lib)
		if replace {
			if err := os.WriteFile(filepath.Join(dst, strings.TrimPrefix(lib, tree)), spares[i], 0o644); err != nil {
				b.Fatal(err)
			}
			continue
		}
		ins := make([]byte, benchInsertBytes)
		for i := range ins {
			ins[i] = byte(rng.IntN(256))
		}
		at := len(data) * 2 / 5
		data = append(data[:at:at], append(ins, data[at:]...)...)
		for range benchRewrites {
			off := rng.IntN(len(data) - 512)
			for i := range 512 {
				data[off+i] = byte(rng.IntN(256))
			}
		}
		if err := os.WriteFile(filepath.Join(dst, strings.TrimPrefix(lib, tree)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	conf := filepath.Join(dst, "etc", "pump.conf")
	data, _ := os.ReadFile(conf)
	os.WriteFile(conf, bytes.Replace(data, []byte("TLSv1.2 TLSv1.3"), []byte("TLSv1.3"), 1), 0o644)
	fixTimes(b, dst)
}

func fixTimes(b *testing.B, dir string) {
	t := time.Unix(benchFixedTime, 0)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chtimes(p, t, t)
		}
		return nil
	})
}

func fileSHA256(b *testing.B, p string) string {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// zstdFull is the compressed size of the full image: zstd -19 when the
// zstd command is here (the reference), else this library's best.
func zstdFull(b *testing.B, img string) int64 {
	if _, err := exec.LookPath("zstd"); err == nil {
		out, err := exec.Command("zstd", "-19", "-T1", "-q", "-c", img).Output()
		if err != nil {
			b.Fatal(err)
		}
		return int64(len(out))
	}
	f, _ := os.Open(img)
	defer f.Close()
	var cw countW
	enc, _ := zstd.NewWriter(&cw, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	io.Copy(enc, f)
	enc.Close()
	return cw.n
}

type countW struct{ n int64 }

func (c *countW) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// measure runs a command and returns its wall time and peak RSS. The
// rusage a parent gets for its child also counts the parent's pages the
// child shared before exec, so the peak comes from the program itself
// ("peak_rss_kib N", deltaapply) or from GNU time, which forks it from a
// small process.
func measure(b *testing.B, name string, args ...string) (float64, int64) {
	cmd := exec.Command(name, args...)
	if !strings.HasSuffix(name, "deltaapply") {
		if _, err := os.Stat("/usr/bin/time"); err != nil {
			return 0, 0
		}
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "peak_rss_kib %M", name}, args...)...)
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	secs := time.Since(t0).Seconds()
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "peak_rss_kib "); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return secs, kib << 10
		}
	}
	b.Fatalf("%s printed no peak RSS:\n%s", name, out)
	return 0, 0
}

// downloadSeconds is the time to fetch the full image over loopback into a
// file, hashing it, as the agent does.
func downloadSeconds(b *testing.B, img string) float64 {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, img) }))
	defer srv.Close()
	t0 := time.Now()
	resp, err := http.Get(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	f, _ := os.Create(img + ".download")
	defer f.Close()
	h := sha256.New()
	io.Copy(io.MultiWriter(f, h), resp.Body)
	f.Sync()
	return time.Since(t0).Seconds()
}

// casyncSize: what a casync/desync-style chunk store sends for img2 to a
// device that holds img1: the chunks of img2 it lacks, each compressed
// alone, plus the index (32-byte id and 8-byte length per chunk).
func casyncSize(b *testing.B, img1, img2 string) int64 {
	have := map[[32]byte]bool{}
	eachChunk(b, img1, func(c []byte) { have[sha256.Sum256(c)] = true })
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	defer enc.Close()
	var n int64
	sent := map[[32]byte]bool{}
	eachChunk(b, img2, func(c []byte) {
		n += 40
		s := sha256.Sum256(c)
		if !have[s] && !sent[s] {
			sent[s] = true
			n += int64(len(enc.EncodeAll(c, nil)))
		}
	})
	return n
}

func eachChunk(b *testing.B, p string, fn func([]byte)) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ck := chunker.NewWithBoundaries(f, delta.Polynomial, delta.MinChunkBytes, delta.MaxChunkBytes)
	ck.SetAverageBits(delta.AverageBits)
	buf := make([]byte, delta.MaxChunkBytes)
	for {
		c, err := ck.Next(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
		fn(c.Data)
	}
}

// patchFrom measures zstd --patch-from (size, apply RSS) when the zstd
// command is here.
func patchFrom(b *testing.B, dir, img1, img2 string) (int64, int64, bool) {
	if _, err := exec.LookPath("zstd"); err != nil {
		return 0, 0, false
	}
	p := filepath.Join(dir, "patch.zst")
	if out, err := exec.Command("zstd", "-19", "-T1", "-q", "-f", "--long=28", "--patch-from="+img1, img2, "-o", p).CombinedOutput(); err != nil {
		b.Logf("zstd --patch-from: %v %s", err, out)
		return 0, 0, false
	}
	fi, _ := os.Stat(p)
	_, rss := measure(b, "zstd", "-d", "-q", "-f", "--long=28", "--patch-from="+img1, p, "-o", filepath.Join(dir, "patched.img"))
	return fi.Size(), rss, true
}
