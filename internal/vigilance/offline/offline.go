// Package offline is the scan release engineers and CI pipelines run
// without a server: it loads OSV, NVD and KEV feeds from files (through
// the same bounded readers and parsers the server uses) into an in-memory
// index and matches SBOMs against it with the same rules, so `vigil sbom
// scan` prints exactly the findings the server would record.
package offline

import (
	"fmt"
	"os"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/feed"
	"github.com/vigil-ota/vigil/internal/vigilance/kev"
)

// Feeds are loaded feeds.
type Feeds struct {
	Index *vigilance.Index
	KEV   vigilance.KEVLookup
	// Records counts the records loaded, by source; KEVEntries the
	// catalog's entries.
	Records    map[string]int
	KEVEntries int
	// Skipped are the malformed records left out.
	Skipped []feed.Item
}

// Load reads the feeds at the given paths (each may be empty; OSV and NVD
// may each be a file, a zip or a directory; KEV is one file).
func Load(osvPath, nvdPath, kevPath string) (*Feeds, error) {
	f := &Feeds{Index: vigilance.NewIndex(), Records: map[string]int{}}
	for _, src := range []struct{ kind, path string }{{feed.KindOSV, osvPath}, {feed.KindNVD, nvdPath}} {
		if src.path == "" {
			continue
		}
		for it := range feed.Records(src.kind, src.path) {
			switch {
			case it.Err != nil && it.Fatal:
				return nil, fmt.Errorf("%s feed %s: %w", src.kind, it.File, it.Err)
			case it.Err != nil:
				f.Skipped = append(f.Skipped, it)
			default:
				f.Index.Add(it.Record)
				f.Records[src.kind]++
			}
		}
		if f.Records[src.kind] == 0 {
			return nil, fmt.Errorf("%s feed %s holds no records", src.kind, src.path)
		}
	}
	if kevPath != "" {
		b, err := readKEV(kevPath)
		if err != nil {
			return nil, err
		}
		cat, err := kev.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("KEV catalog %s: %w", kevPath, err)
		}
		f.KEV, f.KEVEntries = cat.Lookup(), len(cat.Entries)
	}
	return f, nil
}

func readKEV(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("KEV catalog %s is not a file", path)
	}
	var data []byte
	for f, err := range feed.Files(path) {
		if err != nil {
			return nil, fmt.Errorf("KEV catalog %s: %w", path, err)
		}
		data = f.Data
	}
	return data, nil
}

// Scan matches a release's components.
func (f *Feeds) Scan(release string, comps []vigilance.Component) []vigilance.Finding {
	return vigilance.Scan(release, comps, f.Index, f.KEV)
}
