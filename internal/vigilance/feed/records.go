package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/nvd"
	"github.com/vigil-ota/vigil/internal/vigilance/osv"
)

// Kinds of record feeds.
const (
	KindOSV = "osv"
	KindNVD = "nvd"
)

// Item is one record read from a feed, or one left out: Record is nil and
// Err says why (by File and, when it could be read, ID). Fatal marks an
// error that ended the reading (a limit, an unreadable feed).
type Item struct {
	File   string
	ID     string
	Record *vigilance.Record
	Err    error
	Fatal  bool
}

// Records yields the records of an OSV or NVD feed at path (see Files): a
// malformed record is yielded with its error and the reading goes on.
func Records(kind, path string) iter.Seq[Item] {
	return func(yield func(Item) bool) {
		if kind != KindOSV && kind != KindNVD {
			yield(Item{File: path, Err: fmt.Errorf("unknown feed kind %q (osv or nvd)", kind), Fatal: true})
			return
		}
		for f, err := range Files(path) {
			if err != nil {
				if !yield(Item{File: f.Name, Err: err, Fatal: errors.Is(err, ErrLimit) || f.Name == path}) {
					return
				}
				continue
			}
			for _, it := range parseFile(kind, f) {
				if !yield(it) {
					return
				}
			}
		}
	}
}

func parseFile(kind string, f File) []Item {
	if kind == KindOSV {
		r, err := osv.Parse(f.Data)
		if err != nil {
			return []Item{{File: f.Name, ID: idOf(f.Data), Err: err}}
		}
		return []Item{{File: f.Name, ID: r.ID, Record: r}}
	}
	rs, bad, err := nvd.Parse(f.Data)
	if err != nil {
		return []Item{{File: f.Name, ID: idOf(f.Data), Err: err}}
	}
	out := make([]Item, 0, len(rs)+len(bad))
	for _, r := range rs {
		out = append(out, Item{File: f.Name, ID: r.ID, Record: r})
	}
	for _, b := range bad {
		out = append(out, Item{File: f.Name, ID: b.ID, Err: fmt.Errorf("vulnerabilities[%d]: %w", b.Index, b.Err)})
	}
	return out
}

// idOf reads a malformed record's id, if it has one, for the report.
func idOf(b []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.ID) > vigilance.MaxIDLength {
		return ""
	}
	return v.ID
}
