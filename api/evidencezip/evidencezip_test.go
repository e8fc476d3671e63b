package evidencezip_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api/auditchain"
	"github.com/vigil-ota/vigil/api/evidencezip"
)

func chain(n int) []auditchain.Entry {
	prev := auditchain.GenesisHash
	var out []auditchain.Entry
	for i := 1; i <= n; i++ {
		e := auditchain.Entry{Seq: int64(i), Time: time.Date(2026, 11, 30, 9, i, 0, 0, time.UTC), Actor: "a", Action: "x.y", Subject: "s", Details: json.RawMessage(`{"n":1}`), PrevHash: prev}
		e.Hash = e.ComputeHash()
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func bundle(t *testing.T, entries []auditchain.Entry, extra func(*zip.Writer)) []byte {
	var b bytes.Buffer
	w := evidencezip.NewWriter(&b, evidencezip.Manifest{Generated: time.Now()})
	if err := w.AddJSON("findings.json", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	seg := entries[1:]
	raw, _ := json.Marshal(seg)
	w.Add(evidencezip.ChainName, raw)
	w.SetChain(evidencezip.Chain{FirstSeq: seg[0].Seq, LastSeq: seg[len(seg)-1].Seq, PrevHash: seg[0].PrevHash, LastHash: seg[len(seg)-1].Hash, Entries: len(seg), Verified: true})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if extra == nil {
		return b.Bytes()
	}
	// Re-write the zip with a change.
	zr, _ := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		rc, _ := f.Open()
		var body bytes.Buffer
		body.ReadFrom(rc)
		rc.Close()
		fw, _ := zw.Create(f.Name)
		fw.Write(body.Bytes())
	}
	extra(zw)
	zw.Close()
	return out.Bytes()
}

func verify(t *testing.T, b []byte) evidencezip.Result {
	t.Helper()
	res, err := evidencezip.Verify(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestAnUntouchedBundleVerifies(t *testing.T) {
	if res := verify(t, bundle(t, chain(5), nil)); !res.OK() || res.Files != 2 {
		t.Fatalf("%+v", res)
	}
}

// Every way a bundle can be changed is named, with the file.
func TestAChangedBundleNamesTheFile(t *testing.T) {
	for _, c := range []struct {
		name, file, reason string
		extra              func(*zip.Writer)
		entries            func([]auditchain.Entry)
	}{
		{name: "an added file", file: "extra.txt", reason: "not listed", extra: func(zw *zip.Writer) { w, _ := zw.Create("extra.txt"); w.Write([]byte("x")) }},
		{name: "a duplicate name", file: "findings.json", reason: "more than once", extra: func(zw *zip.Writer) { w, _ := zw.Create("findings.json"); w.Write([]byte("{}")) }},
		{name: "a path that escapes", file: "../evil", reason: "unsafe name", extra: func(zw *zip.Writer) { w, _ := zw.Create("../evil"); w.Write([]byte("x")) }},
		{name: "an absolute path", file: "/etc/passwd", reason: "unsafe name", extra: func(zw *zip.Writer) { w, _ := zw.Create("/etc/passwd"); w.Write([]byte("x")) }},
		{name: "an audit entry rewritten with its hash", file: evidencezip.ChainName, reason: "previous-hash", entries: func(es []auditchain.Entry) {
			es[2].Actor = "mallory"
			es[2].Hash = es[2].ComputeHash()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := chain(5)
			if c.entries != nil {
				c.entries(es)
			}
			b := bundle(t, es, c.extra)
			res := verify(t, b)
			found := false
			for _, p := range res.Problems {
				if p.File == c.file && strings.Contains(p.Reason, c.reason) {
					found = true
				}
			}
			if res.OK() || !found {
				t.Fatalf("problems %+v, want %s: %s", res.Problems, c.file, c.reason)
			}
		})
	}
}

func TestAFlippedByteIsNamed(t *testing.T) {
	b := bundle(t, chain(5), nil)
	zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		rc, _ := f.Open()
		var body bytes.Buffer
		body.ReadFrom(rc)
		rc.Close()
		data := body.Bytes()
		if f.Name == "findings.json" {
			data[3] ^= 1
		}
		w, _ := zw.Create(f.Name)
		w.Write(data)
	}
	zw.Close()
	res := verify(t, out.Bytes())
	if len(res.Problems) != 1 || res.Problems[0].File != "findings.json" || !strings.Contains(res.Problems[0].Reason, "differs") {
		t.Fatalf("%+v", res.Problems)
	}
}

func TestNotABundleIsRefusedClearly(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("PK\x03\x04garbage"), bundleWithout(t)} {
		if _, err := evidencezip.Verify(bytes.NewReader(b), int64(len(b))); err == nil {
			t.Fatalf("accepted %q", b)
		}
	}
}

func bundleWithout(t *testing.T) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("findings.json")
	w.Write([]byte("{}"))
	zw.Close()
	return b.Bytes()
}

// FuzzVerify: any bytes, never a panic or an unbounded read.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("PK"))
	f.Add(bundleWithout(&testing.T{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		evidencezip.Verify(bytes.NewReader(b), int64(len(b)))
	})
}
