package slot_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// fuzzHang: an image that takes this long to unpack is a hang (a device
// that never finishes installing).
const fuzzHang = 10 * time.Second

// FuzzUnpack feeds arbitrary images (tar, gzip, zstd, or anything) to the
// dir slot backend inside a jail: whatever it accepts or refuses, nothing
// is ever written outside the slot, and an accepted image's links all lead
// inside it.
func FuzzUnpack(f *testing.F) {
	f.Add(tarOf([]entry{{name: "a", link: "."}, {name: "a/b", link: ".."}, {name: "b/FILE", body: "pwned"}, {name: "b/c", link: ".."}, {name: "b/c/FILE", body: "pwned"}}))
	f.Add(tarOf([]entry{{name: "x", link: "y/.."}, {name: "y", link: "."}, {name: "x/FILE", body: "p"}}))
	f.Add(tarOf([]entry{{name: "usr/lib/libc.so.6", body: "elf"}, {name: "lib", link: "usr/lib"}, {name: "etc/up", link: ".."}}))
	f.Add(gzipped(tarOf([]entry{{name: "zeros", body: string(make([]byte, 1<<16))}})))
	var zs bytes.Buffer
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(tarOf([]entry{{name: "d/f", body: "z"}, {name: "d/l", link: "../../x"}}))
	zw.Close()
	f.Add(zs.Bytes())
	f.Add([]byte("not an archive: a raw firmware image"))
	f.Fuzz(func(t *testing.T, img []byte) {
		j := newMemJail(t)
		done := make(chan error, 1)
		go func() { done <- j.write(t, img, rel) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(fuzzHang):
			t.Fatalf("unpacking a %d-byte image took over %s", len(img), fuzzHang)
		}
		if out := j.escaped(t); len(out) > 0 {
			t.Fatalf("files outside the slot: %v (err %v)", out, err)
		}
		if err == nil {
			j.linksStayInside(t)
		}
	})
}
