// Package imagefmt recognises the image formats a dir slot unpacks — tar,
// tar+gzip and tar+zstd; anything else is one opaque file — and measures
// what a tar image unpacks to. The publisher signs that figure into the
// release (custom.unpacked_length) and the agent enforces it while it
// unpacks, so a small signed archive cannot fill a device's disk
// (decompression bomb).
//
// Threat model: the bytes are signed, but a signing mistake or a stolen
// product key must still not let an archive exhaust the device's memory or
// disk. Decoders are bounded (MaxZstdWindow), and every count is taken from
// the bytes actually read, never from a header's claim alone.
package imagefmt

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// Limits, with their units.
const (
	// MaxUnpackedBytes bounds what one tar image may unpack to, in bytes.
	MaxUnpackedBytes = 64 << 30
	// MaxTarEntries bounds the number of entries in one tar image.
	MaxTarEntries = 1_000_000
	// MaxZstdWindow bounds the zstd decoder's window, in bytes: a frame
	// asking for more is refused instead of allocated.
	MaxZstdWindow = 64 << 20
	// sniffBytes is how much of the head identifies a format.
	sniffBytes = 512
	// readBuffer is the buffered reader's size, in bytes.
	readBuffer = 1 << 20
)

// Format is an image's container format.
type Format int

// Formats.
const (
	Single Format = iota // one opaque file (a raw disk image, a firmware blob)
	Tar
	TarGzip
	TarZstd
)

func (f Format) String() string {
	return [...]string{"single file", "tar", "tar+gzip", "tar+zstd"}[f]
}

// IsTar reports whether the format holds a tar archive.
func (f Format) IsTar() bool { return f != Single }

// Detect identifies the format from the head of br without consuming it.
// gzip and zstd streams are taken to hold tar archives.
func Detect(br *bufio.Reader) Format {
	head, _ := br.Peek(sniffBytes)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return TarGzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return TarZstd
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return Tar
	}
	return Single
}

// Reader opens r as the format Detect finds: for the tar formats it returns
// the decompressed tar stream, for Single the bytes as they are. close
// releases the decoder.
func Reader(r io.Reader) (f Format, out io.Reader, close func(), err error) {
	br := bufio.NewReaderSize(r, readBuffer)
	f = Detect(br)
	switch f {
	case TarGzip:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return f, nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return f, gz, func() { gz.Close() }, nil
	case TarZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return f, nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return f, zr, zr.Close, nil
	}
	return f, br, func() {}, nil
}

// UnpackedLength reads the image at path and returns its format and what it
// unpacks to: the sum of its regular files' sizes for a tar image, the
// file's own size otherwise. It refuses archives over MaxUnpackedBytes or
// MaxTarEntries.
func UnpackedLength(path string) (Format, int64, error) {
	file, err := os.Open(path)
	if err != nil {
		return Single, 0, err
	}
	defer file.Close()
	f, r, closeFn, err := Reader(file)
	if err != nil {
		return f, 0, err
	}
	defer closeFn()
	if !f.IsTar() {
		st, err := file.Stat()
		if err != nil {
			return f, 0, err
		}
		return f, st.Size(), nil
	}
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		if n > MaxTarEntries {
			return f, 0, fmt.Errorf("image has more than %d entries", MaxTarEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return f, total, nil
		}
		if err != nil {
			return f, 0, fmt.Errorf("not a valid %s image: %w", f, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		m, err := io.Copy(io.Discard, tr)
		if err != nil {
			return f, 0, fmt.Errorf("not a valid %s image: %w", f, err)
		}
		if total += m; total > MaxUnpackedBytes {
			return f, 0, fmt.Errorf("image unpacks to more than %d bytes", int64(MaxUnpackedBytes))
		}
	}
}
