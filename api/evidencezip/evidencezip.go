// Package evidencezip is the evidence bundle's format, shared by
// vigil-server (which writes it) and the vigil CLI (which verifies it
// offline): a zip whose manifest.json lists every other file with its
// SHA-256 and size, and describes the audit-chain segment the bundle
// holds (audit/chain.json) with the hashes that bound it.
//
// Threat model for Verify: the bundle is untrusted input. Entries are
// hashed while streaming, never extracted, so names cannot escape a
// directory; names must still be clean relative paths, appear once, and
// be listed; sizes are bounded (MaxFileBytes, MaxManifestBytes,
// MaxChainBytes); a file that differs from the manifest is named.
package evidencezip

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api/auditchain"
)

// Names and limits, with their units.
const (
	Format       = "vigil-evidence/1"
	ManifestName = "manifest.json"
	ChainName    = "audit/chain.json"
	// MaxFileBytes bounds one file of a bundle, in bytes.
	MaxFileBytes = 1 << 30
	// MaxManifestBytes bounds the manifest, in bytes.
	MaxManifestBytes = 64 << 20
	// MaxChainBytes bounds the audit segment, in bytes.
	MaxChainBytes = 512 << 20
	// MaxFiles bounds the files of a bundle.
	MaxFiles = 100000
)

// File is one manifest entry.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Chain describes the audit segment: entries FirstSeq..LastSeq, the first
// linked to PrevHash.
type Chain struct {
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	PrevHash string `json:"prev_hash"`
	LastHash string `json:"last_hash"`
	Entries  int    `json:"entries"`
	// Verified is the server's verification of the segment at export.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// Manifest is manifest.json.
type Manifest struct {
	Format    string    `json:"format"`
	Generated time.Time `json:"generated"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Server    string    `json:"server_version"`
	Chain     Chain     `json:"audit_chain"`
	Files     []File    `json:"files"`
}

// Writer writes a bundle: Add each file, then Close writes the manifest.
type Writer struct {
	zw    *zip.Writer
	m     Manifest
	names map[string]bool
}

// NewWriter starts a bundle on w.
func NewWriter(w io.Writer, m Manifest) *Writer {
	m.Format = Format
	return &Writer{zw: zip.NewWriter(w), m: m, names: map[string]bool{}}
}

// Add writes one file.
func (w *Writer) Add(name string, data []byte) error {
	if err := checkName(name); err != nil || name == ManifestName || w.names[name] {
		return fmt.Errorf("bundle file name %q is not usable: %v", name, err)
	}
	w.names[name] = true
	fw, err := w.zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: w.m.Generated})
	if err != nil {
		return err
	}
	if _, err := fw.Write(data); err != nil {
		return err
	}
	h := sha256.Sum256(data)
	w.m.Files = append(w.m.Files, File{Name: name, SHA256: hex.EncodeToString(h[:]), Size: int64(len(data))})
	return nil
}

// AddJSON writes v as indented JSON.
func (w *Writer) AddJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return w.Add(name, append(b, '\n'))
}

// SetChain records the audit segment's description.
func (w *Writer) SetChain(c Chain) { w.m.Chain = c }

// Close writes the manifest and ends the zip.
func (w *Writer) Close() error {
	sort.Slice(w.m.Files, func(i, j int) bool { return w.m.Files[i].Name < w.m.Files[j].Name })
	b, err := json.MarshalIndent(w.m, "", "  ")
	if err != nil {
		return err
	}
	fw, err := w.zw.CreateHeader(&zip.FileHeader{Name: ManifestName, Method: zip.Deflate, Modified: w.m.Generated})
	if err != nil {
		return err
	}
	if _, err := fw.Write(b); err != nil {
		return err
	}
	return w.zw.Close()
}

func checkName(name string) error {
	if name == "" || len(name) > 512 || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
		return errors.New("not a clean relative path")
	}
	return nil
}

// Problem is one way a bundle fails to verify, naming the file.
type Problem struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// Result is a verification's outcome.
type Result struct {
	Manifest Manifest  `json:"manifest"`
	Files    int       `json:"files_checked"`
	Problems []Problem `json:"problems"`
}

// OK reports whether the bundle verified.
func (r Result) OK() bool { return len(r.Problems) == 0 }

func readLimited(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%d bytes, over the limit of %d", f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("over the limit of %d bytes", limit)
	}
	return b, nil
}

// Verify checks a bundle offline: every listed file present once with its
// hash and size, nothing unlisted, and the audit segment re-verified.
// err is for a bundle that cannot be read at all.
func Verify(r io.ReaderAt, size int64) (Result, error) {
	var res Result
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return res, fmt.Errorf("not a zip archive: %w", err)
	}
	if len(zr.File) > MaxFiles+1 {
		return res, fmt.Errorf("the bundle holds %d files, over the limit of %d", len(zr.File), MaxFiles)
	}
	byName := map[string]*zip.File{}
	for _, f := range zr.File {
		if err := checkName(f.Name); err != nil {
			res.Problems = append(res.Problems, Problem{File: f.Name, Reason: "unsafe name: " + err.Error()})
			continue
		}
		if byName[f.Name] != nil {
			res.Problems = append(res.Problems, Problem{File: f.Name, Reason: "appears more than once"})
			continue
		}
		byName[f.Name] = f
	}
	mf := byName[ManifestName]
	if mf == nil {
		return res, errors.New("the bundle has no manifest.json")
	}
	mb, err := readLimited(mf, MaxManifestBytes)
	if err != nil {
		return res, fmt.Errorf("manifest.json: %w", err)
	}
	if err := json.Unmarshal(mb, &res.Manifest); err != nil {
		return res, fmt.Errorf("manifest.json is not valid JSON: %w", err)
	}
	if res.Manifest.Format != Format {
		return res, fmt.Errorf("manifest.json format %q is not %q", res.Manifest.Format, Format)
	}
	listed := map[string]bool{ManifestName: true}
	for _, want := range res.Manifest.Files {
		listed[want.Name] = true
		f := byName[want.Name]
		if f == nil {
			res.Problems = append(res.Problems, Problem{File: want.Name, Reason: "listed in the manifest but missing"})
			continue
		}
		res.Files++
		if p := checkFile(f, want); p != "" {
			res.Problems = append(res.Problems, Problem{File: want.Name, Reason: p})
		}
	}
	for name := range byName {
		if !listed[name] {
			res.Problems = append(res.Problems, Problem{File: name, Reason: "not listed in the manifest"})
		}
	}
	if cf := byName[ChainName]; cf != nil && listed[ChainName] {
		if p := checkChain(cf, res.Manifest.Chain); p != "" {
			res.Problems = append(res.Problems, Problem{File: ChainName, Reason: p})
		}
	}
	sort.Slice(res.Problems, func(i, j int) bool { return res.Problems[i].File < res.Problems[j].File })
	return res, nil
}

func checkFile(f *zip.File, want File) string {
	if f.UncompressedSize64 > MaxFileBytes {
		return fmt.Sprintf("%d bytes, over the limit of %d", f.UncompressedSize64, MaxFileBytes)
	}
	rc, err := f.Open()
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, MaxFileBytes+1))
	if err != nil {
		return "cannot be read: " + err.Error() // includes zip's own checksum error
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 || n != want.Size {
		return fmt.Sprintf("content differs from the manifest (sha256 %s, %d bytes; manifest says %s, %d bytes)", got, n, want.SHA256, want.Size)
	}
	return ""
}

func checkChain(f *zip.File, c Chain) string {
	b, err := readLimited(f, MaxChainBytes)
	if err != nil {
		return err.Error()
	}
	var entries []auditchain.Entry
	if err := json.Unmarshal(b, &entries); err != nil {
		return "not a JSON list of audit entries: " + err.Error()
	}
	if len(entries) == 0 {
		if c.Entries != 0 {
			return "the manifest describes entries the segment does not hold"
		}
		return ""
	}
	if err := auditchain.Verify(entries, c.PrevHash, c.FirstSeq-1); err != nil {
		return err.Error()
	}
	last := entries[len(entries)-1]
	if entries[0].Seq != c.FirstSeq || last.Seq != c.LastSeq || last.Hash != c.LastHash || len(entries) != c.Entries {
		return fmt.Sprintf("the segment (entries %d..%d, last hash %s) is not the one the manifest describes (%d..%d, %s)",
			entries[0].Seq, last.Seq, last.Hash, c.FirstSeq, c.LastSeq, c.LastHash)
	}
	return ""
}
