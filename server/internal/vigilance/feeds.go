package vigilance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/internal/vigilance/feed"
	"github.com/vigil-ota/vigil/internal/vigilance/kev"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// MaxReportedSkips bounds the skipped records an import report lists (the
// count is always exact).
const MaxReportedSkips = 1000

// ImportFeed imports the feed at path, of kind api.FeedOSV, FeedNVD or
// FeedKEV: a file, a zip archive or a directory of .json files (see
// internal/vigilance/feed for the limits). Imports are idempotent and
// incremental: a record whose normalized content did not change is not
// rewritten, and only the components a changed record names are matched
// again. A malformed record is skipped and reported by file and id; the
// others are imported, each one whole.
func (s *Service) ImportFeed(ctx context.Context, kind, path string) (api.ImportReport, error) {
	release, err := s.importSlot(ctx)
	if err != nil {
		return api.ImportReport{}, err
	}
	defer release()
	return s.importFeed(ctx, kind, path)
}

// importSlot waits for one of the MaxConcurrentImports slots (spooling and
// importing) and returns its release.
func (s *Service) importSlot(ctx context.Context) (func(), error) {
	select {
	case s.importing <- struct{}{}:
		return func() { <-s.importing }, nil
	case <-ctx.Done():
		return nil, apperr.Wrap(ctx.Err(), apperr.Unavailable, "another feed import is running; try again")
	}
}

func (s *Service) importFeed(ctx context.Context, kind, path string) (api.ImportReport, error) {
	start := time.Now()
	var rep api.ImportReport
	var err error
	switch kind {
	case api.FeedOSV, api.FeedNVD:
		rep, err = s.importRecords(ctx, kind, path)
	case api.FeedKEV:
		rep, err = s.importKEV(ctx, path)
	default:
		return rep, apperr.New(apperr.Invalid, "unknown feed kind %q: osv, nvd or kev", kind)
	}
	rep.Kind, rep.Millis = kind, time.Since(start).Milliseconds()
	if rep.Skipped == nil {
		rep.Skipped = []api.Skipped{}
	}
	if err != nil {
		return rep, err
	}
	s.o.Log.Info("feed imported", zap.String("kind", kind), zap.Int("records", rep.Records), zap.Int("new", rep.New), zap.Int("changed", rep.Changed),
		zap.Int("unchanged", rep.Unchanged), zap.Int("skipped", len(rep.Skipped)), zap.Int("opened", rep.FindingsOpened), zap.Int("closed", rep.FindingsClosed),
		zap.Int64("millis", rep.Millis))
	_, aerr := audit.Record(ctx, s.st.Audit, "vigilance.feed_import", kind, map[string]any{"records": rep.Records, "new": rep.New, "changed": rep.Changed,
		"unchanged": rep.Unchanged, "skipped": len(rep.Skipped), "withdrawn": rep.Withdrawn, "kev_version": rep.KEVVersion,
		"findings_opened": rep.FindingsOpened, "findings_closed": rep.FindingsClosed})
	return rep, aerr
}

// recordImport is the state of one OSV or NVD import: records wait in
// pending (at most RecordBatch), then their stored hashes are read in one
// query and the new and changed ones written in one transaction.
type recordImport struct {
	s       *Service
	source  string
	seen    map[string]string // hash of each record this import holds
	pending []pendingRecord
	keys    map[state.IndexKey]bool
	changed []string
	rep     *api.ImportReport
}

type pendingRecord struct {
	r    *vigilance.Record
	data []byte
	hash string
}

func (s *Service) importRecords(ctx context.Context, kind, path string) (api.ImportReport, error) {
	var rep api.ImportReport
	files := map[string]bool{}
	im := &recordImport{s: s, source: kind, seen: map[string]string{}, keys: map[state.IndexKey]bool{}, rep: &rep}
	for it := range feed.Records(kind, path) {
		files[it.File] = true
		if it.Err != nil {
			if it.Fatal {
				return rep, apperr.New(apperr.Invalid, "%s feed %s: %v (%d records were imported before it)", kind, it.File, it.Err, rep.New+rep.Changed).WithCode(api.CodeFeedMalformed)
			}
			rep.Skipped = appendSkip(rep.Skipped, api.Skipped{File: it.File, ID: it.ID, Error: it.Err.Error()})
			continue
		}
		if it.Record.Source != kind {
			return rep, apperr.New(apperr.Invalid, "%s: a %s record in a %s feed", it.File, it.Record.Source, kind).WithCode(api.CodeFeedMalformed)
		}
		if err := im.add(ctx, it.Record); err != nil {
			return rep, err
		}
	}
	if err := im.flush(ctx); err != nil {
		return rep, err
	}
	rep.Files = len(files)
	if len(files) == 0 || rep.Records == 0 && len(rep.Skipped) == 0 {
		return rep, apperr.New(apperr.Invalid, "%s holds no %s records (.json files, a zip of them, or an NVD API page)", path, kind).WithCode(api.CodeFeedMalformed)
	}
	comps, err := s.componentsToRescan(ctx, slices.Collect(maps.Keys(im.keys)), im.changed)
	if err != nil {
		return rep, err
	}
	rep.FindingsOpened, rep.FindingsClosed, err = s.rescan(ctx, comps)
	return rep, err
}

func appendSkip(list []api.Skipped, sk api.Skipped) []api.Skipped {
	if len(list) >= MaxReportedSkips {
		return list
	}
	return append(list, sk)
}

// add queues a record; a full queue is flushed.
func (im *recordImport) add(ctx context.Context, r *vigilance.Record) error {
	im.rep.Records++
	if r.Withdrawn {
		im.rep.Withdrawn++
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	im.pending = append(im.pending, pendingRecord{r: r, data: data, hash: hex.EncodeToString(sum[:])})
	if len(im.pending) >= RecordBatch {
		return im.flush(ctx)
	}
	return nil
}

// flush writes the pending records that are new or changed.
func (im *recordImport) flush(ctx context.Context) error {
	if len(im.pending) == 0 {
		return nil
	}
	var ask []string
	for _, p := range im.pending {
		if _, ok := im.seen[p.r.ID]; !ok {
			ask = append(ask, p.r.ID)
		}
	}
	stored, err := im.s.st.Vulns.RecordHashes(ctx, im.source, ask)
	if err != nil {
		return err
	}
	var batch []state.VulnRecord
	for _, p := range im.pending {
		old, had := im.seen[p.r.ID]
		if !had {
			old, had = stored[p.r.ID]
		}
		switch {
		case had && old == p.hash:
			im.rep.Unchanged++
			continue
		case had:
			im.rep.Changed++
			im.changed = append(im.changed, p.r.ID)
		default:
			im.rep.New++
		}
		im.seen[p.r.ID] = p.hash
		keys := recordKeys(p.r)
		for _, k := range keys {
			im.keys[k] = true
		}
		batch = append(batch, state.VulnRecord{Source: p.r.Source, ID: p.r.ID, Hash: p.hash, Withdrawn: p.r.Withdrawn, Data: p.data, Keys: keys,
			Aliases: p.r.Aliases, Imported: im.s.now()})
	}
	im.pending = im.pending[:0]
	return im.s.st.Vulns.PutRecords(ctx, batch)
}

// componentsToRescan returns the components indexed by keys, plus those of
// open findings of the changed records (a changed record may have dropped
// a key, and its findings must close).
func (s *Service) componentsToRescan(ctx context.Context, keys []state.IndexKey, changed []string) ([]state.SBOMComponent, error) {
	comps, err := s.st.SBOMs.ComponentsByKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	var open []state.FindingRecord
	for _, id := range changed {
		fs, err := s.st.Findings.Findings(ctx, state.FindingFilter{VulnID: id, Status: vigilance.StatusOpen})
		if err != nil {
			return nil, err
		}
		open = append(open, fs...)
	}
	more, err := s.componentsOf(ctx, open)
	if err != nil {
		return nil, err
	}
	return dedupeComponents(append(comps, more...)), nil
}

// componentsOf returns the SBOM components the findings are on.
func (s *Service) componentsOf(ctx context.Context, fs []state.FindingRecord) ([]state.SBOMComponent, error) {
	want := map[[2]string]map[string]bool{}
	for _, f := range fs {
		var v vigilance.Finding
		if json.Unmarshal(f.Data, &v) != nil {
			continue
		}
		k := [2]string{f.Product, f.Version}
		if want[k] == nil {
			want[k] = map[string]bool{}
		}
		want[k][v.Component.BOMRef] = true
	}
	var out []state.SBOMComponent
	for k, refs := range want {
		sb, err := s.st.SBOMs.SBOM(ctx, k[0], k[1])
		if apperr.Is(err, apperr.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, c := range sb.Components {
			if refs[c.BOMRef] {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func dedupeComponents(cs []state.SBOMComponent) []state.SBOMComponent {
	seen := map[[3]string]bool{}
	out := cs[:0:0]
	for _, c := range cs {
		k := [3]string{c.Product, c.Version, c.BOMRef}
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

// importKEV replaces the KEV catalog when it changed, and re-matches the
// components of open findings (their KEV flags may change).
func (s *Service) importKEV(ctx context.Context, path string) (api.ImportReport, error) {
	var rep api.ImportReport
	var data []byte
	for f, err := range feed.Files(path) {
		if err != nil {
			return rep, apperr.New(apperr.Invalid, "KEV catalog %s: %v", f.Name, err).WithCode(api.CodeFeedMalformed)
		}
		if rep.Files++; rep.Files > 1 {
			return rep, apperr.New(apperr.Invalid, "a KEV import is one file (known_exploited_vulnerabilities.json), not %s", path).WithCode(api.CodeFeedMalformed)
		}
		data = f.Data
	}
	cat, err := kev.Parse(data)
	if err != nil {
		return rep, apperr.New(apperr.Invalid, "KEV catalog %s: %v", path, err).WithCode(api.CodeFeedMalformed)
	}
	entries := make(map[string][]byte, len(cat.Entries))
	for _, e := range cat.Entries {
		b, _ := json.Marshal(e)
		entries[e.CVE] = b
	}
	rep.Records, rep.KEVVersion = len(entries), cat.Version
	oldVer, old, err := s.st.Vulns.KEV(ctx)
	if err != nil {
		return rep, err
	}
	if oldVer == cat.Version && sameEntries(old, entries) {
		rep.Unchanged = len(entries)
		return rep, nil
	}
	for id, b := range entries {
		switch ob, ok := old[id]; {
		case !ok:
			rep.New++
		case !bytes.Equal(ob, b):
			rep.Changed++
		default:
			rep.Unchanged++
		}
	}
	if err := s.st.Vulns.PutKEV(ctx, cat.Version, entries); err != nil {
		return rep, err
	}
	s.dropKEVCache()
	open, err := s.st.Findings.Findings(ctx, state.FindingFilter{Status: vigilance.StatusOpen})
	if err != nil {
		return rep, err
	}
	comps, err := s.componentsOf(ctx, open)
	if err != nil {
		return rep, err
	}
	rep.FindingsOpened, rep.FindingsClosed, err = s.rescan(ctx, comps)
	return rep, err
}

func sameEntries(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// FeedStatus reports what is imported and the scheduled feeds' last
// fetches.
func (s *Service) FeedStatus(ctx context.Context, scheduled []FeedConfig) (api.FeedStatus, error) {
	out := api.FeedStatus{Records: map[string]int{}, Scheduled: []api.FeedSchedule{}}
	for _, src := range []string{vigilance.SourceOSV, vigilance.SourceNVD} {
		n, err := s.st.Vulns.CountRecords(ctx, src)
		if err != nil {
			return out, err
		}
		out.Records[src] = n
	}
	ver, entries, err := s.st.Vulns.KEV(ctx)
	if err != nil {
		return out, err
	}
	out.KEVVersion, out.KEVEntries = ver, len(entries)
	states, err := s.st.Vulns.FeedStates(ctx)
	if err != nil {
		return out, err
	}
	byName := map[string]state.FeedState{}
	for _, st := range states {
		byName[st.Name] = st
	}
	for _, fc := range scheduled {
		st := byName[fc.Name()]
		out.Scheduled = append(out.Scheduled, api.FeedSchedule{Name: fc.Name(), Kind: fc.Kind, URL: fc.URL, Interval: fc.Interval.String(),
			Fetched: st.Fetched, Succeeded: st.Succeeded, Message: st.Message})
	}
	return out, nil
}
