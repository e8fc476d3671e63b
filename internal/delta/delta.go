// Package delta makes and applies Vigil's image deltas: the bytes a device
// needs to rebuild a release's full image from the image it already runs.
//
// Method (docs/delta.md has the measurements behind it): both images are cut
// into content-defined chunks (Rabin fingerprints, github.com/restic/chunker,
// 16 KiB–256 KiB, 64 KiB on average), as casync and RAUC do. A chunk of the
// new image that the base also holds becomes a COPY of the base's bytes; any
// other chunk becomes DATA: the chunk compressed with zstd
// (github.com/klauspost/compress) using, as a raw dictionary, the base's
// bytes around the same place (DictMargin either side), so a library that
// changed a little costs little. The delta is a stream:
//
//	"vigil-delta-v1\n" header-JSON "\n" op* END
//	COPY: 'C' uvarint(base offset) uvarint(length)
//	DATA: 'D' uvarint(dict offset) uvarint(dict length) uvarint(length) uvarint(compressed length) bytes
//	END:  'E'
//
// Threat model: a delta is a signed target, but its bytes are parsed before
// the result is known to be right, so Apply treats them as hostile. Every
// length is bounded where it is read (MaxHeaderBytes, MaxDictBytes,
// MaxChunkBytes, MaxCompressedBytes, the header's result length), COPY and
// dictionaries stay inside the base, memory is O(MaxDictBytes) whatever the
// image size, and the result is accepted only when its length and SHA-256
// equal what the caller expects (the signed full image): a delta cannot make
// a device run anything but the signed full image. A delta made for another
// base is refused before a byte is written (ErrWrongBase), and a base that
// changed on disk ends in ErrResultMismatch at the latest.
package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
)

// Format and limits, with their units.
const (
	// Magic opens every delta.
	Magic = "vigil-delta-v1\n"
	// MinChunkBytes, MaxChunkBytes and AverageBits shape the chunks: the
	// average is 2^AverageBits bytes.
	MinChunkBytes = 16 << 10
	MaxChunkBytes = 256 << 10
	AverageBits   = 16
	// DictMargin is how much of the base either side of a DATA chunk's
	// place serves as its dictionary, in bytes.
	DictMargin = 1 << 20
	// MaxDictBytes bounds one DATA op's dictionary, in bytes.
	MaxDictBytes = 2*DictMargin + MaxChunkBytes
	// MaxCompressedBytes bounds one DATA op's compressed bytes (zstd's
	// worst case for MaxChunkBytes, with room to spare).
	MaxCompressedBytes = MaxChunkBytes + MaxChunkBytes/128 + 1024
	// MaxHeaderBytes bounds the header line.
	MaxHeaderBytes = 4 << 10
	// MaxResultBytes bounds the image a delta may rebuild.
	MaxResultBytes = 64 << 30
	// zstdWindow is the window both sides use, in bytes (≥ MaxDictBytes).
	zstdWindow = 4 << 20
	// copyBuffer is the buffer COPY ops go through, in bytes.
	copyBuffer = 1 << 20

	opCopy = 'C'
	opData = 'D'
	opEnd  = 'E'
)

// Polynomial is the chunker's Rabin polynomial (irreducible, fixed so that
// one image always cuts the same way).
const Polynomial = chunker.Pol(0x3DA3358B4DC173)

// Header says what a delta applies to and what it rebuilds.
type Header struct {
	BaseSHA256   string `json:"base_sha256"`
	BaseLength   int64  `json:"base_length"`
	ResultSHA256 string `json:"result_sha256"`
	ResultLength int64  `json:"result_length"`
}

// Errors, by what the caller should do: ErrWrongBase and ErrResultMismatch
// mean "take the full image"; ErrMalformed means the delta is corrupt or
// hostile (take the full image, and report it).
var (
	ErrWrongBase      = errors.New("the delta is for another base image")
	ErrResultMismatch = errors.New("the rebuilt image is not the expected image")
	ErrMalformed      = errors.New("the delta is malformed")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Stats describe a made delta.
type Stats struct {
	Header
	Bytes     int64 // the delta's size
	CopyBytes int64 // bytes of the result copied from the base
	DataBytes int64 // bytes of the result carried as DATA (before compression)
}

// Make writes the delta from the image at basePath to the image at
// newPath to w.
func Make(basePath, newPath string, w io.Writer) (Stats, error) {
	base, err := os.Open(basePath)
	if err != nil {
		return Stats{}, err
	}
	defer base.Close()
	nf, err := os.Open(newPath)
	if err != nil {
		return Stats{}, err
	}
	defer nf.Close()
	var st Stats
	index, baseSum, baseLen, err := indexChunks(base)
	if err != nil {
		return st, fmt.Errorf("read base %s: %w", basePath, err)
	}
	newSum, newLen, err := HashReader(nf)
	if err != nil {
		return st, fmt.Errorf("read %s: %w", newPath, err)
	}
	if newLen > MaxResultBytes {
		return st, fmt.Errorf("%s is %d bytes; a delta rebuilds at most %d", newPath, newLen, int64(MaxResultBytes))
	}
	st.Header = Header{BaseSHA256: baseSum, BaseLength: baseLen, ResultSHA256: newSum, ResultLength: newLen}
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	hj, _ := json.Marshal(st.Header)
	bw.WriteString(Magic)
	bw.Write(hj)
	bw.WriteByte('\n')

	if _, err := nf.Seek(0, io.SeekStart); err != nil {
		return st, err
	}
	ck := chunker.NewWithBoundaries(nf, Polynomial, MinChunkBytes, MaxChunkBytes)
	ck.SetAverageBits(AverageBits)
	buf := make([]byte, MaxChunkBytes)
	dict := make([]byte, MaxDictBytes)
	var newOff int64
	shift := int64(0)                  // base offset − new offset of the last copied chunk
	var pendOff, pendLen int64 = -1, 0 // a COPY being extended
	flush := func() {
		if pendLen > 0 {
			writeOp(bw, opCopy, uint64(pendOff), uint64(pendLen))
		}
		pendOff, pendLen = -1, 0
	}
	for {
		c, err := ck.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", newPath, err)
		}
		sum := sha256.Sum256(c.Data)
		if off, ok := index[sum]; ok {
			if pendLen > 0 && pendOff+pendLen == off {
				pendLen += int64(c.Length)
			} else {
				flush()
				pendOff, pendLen = off, int64(c.Length)
			}
			shift = off - newOff
			st.CopyBytes += int64(c.Length)
		} else {
			flush()
			at := newOff + shift
			lo := max(0, min(at-DictMargin, baseLen))
			hi := min(baseLen, max(at+int64(c.Length)+DictMargin, lo))
			d := dict[:hi-lo]
			if _, err := base.ReadAt(d, lo); err != nil && err != io.EOF {
				return st, fmt.Errorf("read base %s: %w", basePath, err)
			}
			comp, err := compress(c.Data, d)
			if err != nil {
				return st, err
			}
			writeOp(bw, opData, uint64(lo), uint64(len(d)), uint64(c.Length), uint64(len(comp)))
			bw.Write(comp)
			st.DataBytes += int64(c.Length)
		}
		newOff += int64(c.Length)
	}
	flush()
	bw.WriteByte(opEnd)
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.Bytes = cw.n
	return st, nil
}

func compress(data, dict []byte) ([]byte, error) {
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow)}
	if len(dict) > 0 {
		opts = append(opts, zstd.WithEncoderDictRaw(1, dict))
	}
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil), nil
}

func writeOp(w *bufio.Writer, op byte, vals ...uint64) {
	w.WriteByte(op)
	var b [binary.MaxVarintLen64]byte
	for _, v := range vals {
		w.Write(b[:binary.PutUvarint(b[:], v)])
	}
}

// indexChunks cuts the base into chunks: their SHA-256 → first offset.
func indexChunks(f *os.File) (map[[32]byte]int64, string, int64, error) {
	index := map[[32]byte]int64{}
	h := sha256.New()
	ck := chunker.NewWithBoundaries(io.TeeReader(f, h), Polynomial, MinChunkBytes, MaxChunkBytes)
	ck.SetAverageBits(AverageBits)
	buf := make([]byte, MaxChunkBytes)
	var off int64
	for {
		c, err := ck.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", 0, err
		}
		sum := sha256.Sum256(c.Data)
		if _, ok := index[sum]; !ok {
			index[sum] = off
		}
		off += int64(c.Length)
	}
	return index, hex.EncodeToString(h.Sum(nil)), off, nil
}

// HashReader streams r through SHA-256: the hex digest and the length.
func HashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Expect is what the caller knows from signed metadata: the image it runs
// and the image the delta must rebuild.
type Expect struct {
	BaseSHA256   string
	BaseLength   int64
	ResultSHA256 string
	ResultLength int64
}

// ReadHeader reads and checks a delta's magic and header.
func ReadHeader(r *bufio.Reader) (Header, error) {
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != Magic {
		return Header{}, malformed("it does not start with %q", Magic)
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return Header{}, malformed("the header is longer than %d bytes", MaxHeaderBytes)
		}
		return Header{}, malformed("the header is cut short")
	}
	if len(line) > MaxHeaderBytes {
		return Header{}, malformed("the header is longer than %d bytes", MaxHeaderBytes)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Header{}, malformed("the header is not valid JSON: %v", err)
	}
	if !isSHA256(h.BaseSHA256) || !isSHA256(h.ResultSHA256) || h.BaseLength < 0 || h.ResultLength < 0 || h.ResultLength > MaxResultBytes {
		return Header{}, malformed("the header's hashes or lengths are out of range")
	}
	return h, nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == s
}

// Apply rebuilds the image from base (the image the device runs, of
// length want.BaseLength) and the delta d into out, and returns the header.
// It refuses a delta whose header names another base or another result
// before writing anything, and returns nil only when what it wrote has the
// expected length and SHA-256; on any error the caller must discard out.
func Apply(base io.ReaderAt, d io.Reader, out io.Writer, want Expect) (Header, error) {
	r := bufio.NewReaderSize(d, MaxHeaderBytes+len(Magic))
	h, err := ReadHeader(r)
	if err != nil {
		return h, err
	}
	if h.BaseSHA256 != want.BaseSHA256 || h.BaseLength != want.BaseLength {
		return h, fmt.Errorf("%w: it applies to %s (%d bytes), the device runs %s (%d bytes)", ErrWrongBase, h.BaseSHA256, h.BaseLength, want.BaseSHA256, want.BaseLength)
	}
	if h.ResultSHA256 != want.ResultSHA256 || h.ResultLength != want.ResultLength {
		return h, fmt.Errorf("%w: the delta rebuilds %s (%d bytes), the signed image is %s (%d bytes)", ErrResultMismatch, h.ResultSHA256, h.ResultLength, want.ResultSHA256, want.ResultLength)
	}
	sum := sha256.New()
	w := io.MultiWriter(out, sum)
	var written int64
	room := func(n uint64) error {
		if n > uint64(h.ResultLength-written) {
			return malformed("an op writes past the result's %d bytes", h.ResultLength)
		}
		return nil
	}
	inBase := func(off, n uint64) error {
		if off > uint64(h.BaseLength) || n > uint64(h.BaseLength)-off {
			return malformed("an op reads bytes %d+%d outside the %d-byte base", off, n, h.BaseLength)
		}
		return nil
	}
	cbuf := make([]byte, copyBuffer)
	var dict, comp, raw []byte
	for {
		op, err := r.ReadByte()
		if err != nil {
			return h, malformed("it ends before its END op")
		}
		switch op {
		case opCopy:
			v, err := uvarints(r, 2)
			if err != nil {
				return h, err
			}
			if err := inBase(v[0], v[1]); err != nil {
				return h, err
			}
			if err := room(v[1]); err != nil {
				return h, err
			}
			n, err := io.CopyBuffer(w, io.NewSectionReader(base, int64(v[0]), int64(v[1])), cbuf)
			if err != nil {
				return h, fmt.Errorf("copy from the base: %w", err)
			}
			if n != int64(v[1]) {
				return h, fmt.Errorf("%w: the base ended %d bytes into a %d-byte copy (it changed on disk?)", ErrResultMismatch, n, v[1])
			}
			written += n
		case opData:
			v, err := uvarints(r, 4)
			if err != nil {
				return h, err
			}
			dictOff, dictLen, rawLen, compLen := v[0], v[1], v[2], v[3]
			switch {
			case dictLen > MaxDictBytes:
				return h, malformed("a dictionary of %d bytes (at most %d)", dictLen, MaxDictBytes)
			case rawLen == 0 || rawLen > MaxChunkBytes:
				return h, malformed("a data chunk of %d bytes (1 to %d)", rawLen, MaxChunkBytes)
			case compLen > MaxCompressedBytes:
				return h, malformed("%d compressed bytes for one chunk (at most %d)", compLen, MaxCompressedBytes)
			}
			if err := inBase(dictOff, dictLen); err != nil {
				return h, err
			}
			if err := room(rawLen); err != nil {
				return h, err
			}
			dict, comp = grow(dict, int(dictLen)), grow(comp, int(compLen))
			if _, err := base.ReadAt(dict, int64(dictOff)); err != nil && !(errors.Is(err, io.EOF) && dictLen == 0) {
				return h, fmt.Errorf("%w: read the base for a dictionary: %v (it changed on disk?)", ErrResultMismatch, err)
			}
			if _, err := io.ReadFull(r, comp); err != nil {
				return h, malformed("it ends inside a data chunk")
			}
			raw, err = decompress(comp, dict, raw[:0], int(rawLen))
			if err != nil {
				return h, err
			}
			if _, err := w.Write(raw); err != nil {
				return h, err
			}
			written += int64(len(raw))
		case opEnd:
			if _, err := r.ReadByte(); err != io.EOF {
				return h, malformed("bytes follow its END op")
			}
			if written != h.ResultLength {
				return h, fmt.Errorf("%w: %d bytes rebuilt, %d expected", ErrResultMismatch, written, h.ResultLength)
			}
			if got := hex.EncodeToString(sum.Sum(nil)); got != h.ResultSHA256 {
				return h, fmt.Errorf("%w: the rebuilt image's SHA-256 is %s, the signed one %s (the base changed on disk?)", ErrResultMismatch, got, h.ResultSHA256)
			}
			return h, nil
		default:
			return h, malformed("unknown op %q", op)
		}
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func uvarints(r *bufio.Reader, n int) ([]uint64, error) {
	v := make([]uint64, n)
	for i := range v {
		x, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, malformed("a bad or cut-short number in an op")
		}
		v[i] = x
	}
	return v, nil
}

func decompress(comp, dict, dst []byte, rawLen int) ([]byte, error) {
	opts := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdWindow),
		zstd.WithDecoderMaxMemory(MaxChunkBytes)}
	if len(dict) > 0 {
		opts = append(opts, zstd.WithDecoderDictRaw(1, dict))
	}
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	out, err := dec.DecodeAll(comp, dst)
	if err != nil {
		return nil, malformed("a data chunk does not decompress: %v", err)
	}
	if len(out) != rawLen {
		return nil, malformed("a data chunk decompresses to %d bytes, not %d", len(out), rawLen)
	}
	return out, nil
}
