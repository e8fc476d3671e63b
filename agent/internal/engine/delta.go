package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/internal/delta"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Deltas (docs/delta.md). After a commit the agent keeps the full image it
// installed as DATA_DIR/base/SHA256 (the base). When the release it is to
// install has a signed delta whose base is that image, it downloads the
// delta through TUF (verified like any target, resumable), rebuilds the
// image from it and the base into the download's place (a ".rebuilding"
// file, renamed only once its length and SHA-256 equal the signed full
// image's), and goes on as if it had downloaded the image. Anything off — a delta that fails verification, a base missing or
// changed on disk, a delta that does not rebuild the signed image — falls
// back to the full image, with the reason in the downloading event.
// Memory stays within package delta's bounds whatever the image size.

// BaseDir is where the installed full image is kept, under the data dir.
const BaseDir = "base"

// ReasonDeltaFallback starts the reason of a fallback to the full image.
const ReasonDeltaFallback = "delta not used: "

func (e *Engine) basePath(sha string) string { return filepath.Join(e.cfg.DataDir, BaseDir, sha) }

// deltaFor finds a signed delta of the chosen release whose base is the
// image the active slot runs and is kept here; nil when there is none.
func (e *Engine) deltaFor(ctx context.Context, tc *tufclient.Client, chosen *tufclient.Release, active string) *journal.Delta {
	if e.cfg.NoDeltas {
		return nil
	}
	cur, err := e.cfg.Slots.Installed(ctx, active)
	if err != nil || cur.SHA256 == "" {
		return nil
	}
	if fi, err := os.Stat(e.basePath(cur.SHA256)); err != nil || fi.Size() != cur.Length {
		return nil
	}
	list, _, err := tc.Releases(e.cfg.Product)
	if err != nil {
		return nil
	}
	full := hex.EncodeToString(chosen.Target.Hashes["sha256"])
	for _, r := range list {
		c := r.Custom
		if c.Kind == release.KindDelta && c.Version == chosen.Custom.Version && c.DeltaBaseSHA256 == cur.SHA256 &&
			c.ResultSHA256 == full && c.ResultLength == chosen.Target.Length {
			return &journal.Delta{Target: r.Path, SHA256: hex.EncodeToString(r.Target.Hashes["sha256"]), Length: r.Target.Length,
				BaseSHA256: cur.SHA256, BaseLength: cur.Length}
		}
	}
	return nil
}

// rebuild turns the journaled delta into the verified image, or falls back
// to the full image. A returned error is transient (the delta's download
// resumes at the next poll).
func (e *Engine) rebuild(ctx context.Context) error {
	d, r := e.st.Delta, e.st.Release
	deltaPath := filepath.Join(e.cfg.DataDir, "downloads", d.SHA256+"."+filepath.Base(d.Target))
	out := e.downloadPath() + ".rebuilding"
	fallback := func(why string) error {
		os.Remove(deltaPath)
		os.Remove(out)
		e.cfg.Log.Warn("delta not used", zap.String("delta", d.Target), zap.String("why", why))
		return e.to(journal.Downloading, ReasonDeltaFallback+why+"; downloading the full image", func(s *journal.State) { s.Delta = nil })
	}
	// A crash after the rename, before the journal moved on: done already.
	if sum, n, err := hashFile(e.downloadPath()); err == nil && sum == r.SHA256 && n == r.Length {
		return e.rebuilt(deltaPath)
	}
	h, err := hex.DecodeString(d.SHA256)
	if err != nil {
		return fallback("the journal holds a bad delta sha256")
	}
	tf := &metadata.TargetFiles{Path: d.Target, Length: d.Length, Hashes: metadata.Hashes{"sha256": h}}
	_, tu := tufclient.RepoURLs(e.cfg.Server)
	if _, err := tufclient.Download(ctx, e.cfg.HTTP, tufclient.ConsistentTargetURL(tu, d.Target, d.SHA256), tf, deltaPath, e.cfg.Download); err != nil {
		if tufclient.IsVerification(err) {
			return fallback("the delta failed verification: " + err.Error())
		}
		return fmt.Errorf("download delta %s (will resume): %w", d.Target, err)
	}
	e.cfg.Failpoint("delta-downloaded")
	base, err := os.Open(e.basePath(d.BaseSHA256))
	if err != nil {
		return fallback("the installed image kept for deltas is gone: " + err.Error())
	}
	defer base.Close()
	df, err := os.Open(deltaPath)
	if err != nil {
		return fallback("the verified delta is gone: " + err.Error())
	}
	defer df.Close()
	of, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// The base is not hashed first: the rebuilt image is accepted only by
	// the signed hash anyway, and one pass over the image is enough. The
	// base is hashed only to say why a rebuild did not match.
	_, err = delta.Apply(base, df, &midWriter{w: of, half: r.Length / 2, hit: func() { e.cfg.Failpoint("delta-rebuild-mid") }},
		delta.Expect{BaseSHA256: d.BaseSHA256, BaseLength: d.BaseLength, ResultSHA256: r.SHA256, ResultLength: r.Length})
	if err == nil {
		err = of.Sync()
	}
	if cerr := of.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && !errors.Is(err, delta.ErrResultMismatch) {
			os.Remove(out)
			return fmt.Errorf("rebuild from delta %s (will retry): %w", d.Target, err)
		}
		base.Seek(0, io.SeekStart)
		if sum, n, herr := delta.HashReader(base); herr == nil && (sum != d.BaseSHA256 || n != d.BaseLength) {
			return fallback(fmt.Sprintf("the installed image kept for deltas changed on disk (sha256 %s, %d bytes; installed %s, %d bytes)", sum, n, d.BaseSHA256, d.BaseLength))
		}
		return fallback("the delta did not rebuild the signed image: " + err.Error())
	}
	if err := os.Rename(out, e.downloadPath()); err != nil {
		return err
	}
	if err := journal.SyncDir(filepath.Dir(out)); err != nil {
		return err
	}
	return e.rebuilt(deltaPath)
}

// rebuilt moves on from a rebuilt image as from a verified download.
func (e *Engine) rebuilt(deltaPath string) error {
	os.Remove(deltaPath)
	e.cfg.Failpoint("delta-rebuilt")
	target := e.st.Delta.Target
	return e.to(journal.Verified, "rebuilt from delta "+target, func(s *journal.State) { s.Download, s.Delta = e.downloadPath(), nil })
}

// keepBase keeps the committed image as the base of future deltas (only
// the newest one); it is best effort: without it the next install takes
// the full image.
func (e *Engine) keepBase() {
	if e.cfg.NoDeltas || e.st.Release == nil || e.st.Download == "" {
		return
	}
	dir := filepath.Join(e.cfg.DataDir, BaseDir)
	keep := e.basePath(e.st.Release.SHA256)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if err := os.Rename(e.st.Download, keep); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			e.cfg.Log.Warn("the installed image is not kept for deltas", zap.Error(err))
		}
		return
	}
	journal.SyncDir(dir)
	entries, _ := os.ReadDir(dir)
	for _, ent := range entries {
		if p := filepath.Join(dir, ent.Name()); p != keep {
			os.Remove(p)
		}
	}
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return delta.HashReader(f)
}

// midWriter calls hit once half of the expected bytes went through
// (crash injection in the middle of a rebuild; a no-op otherwise).
type midWriter struct {
	w    io.Writer
	half int64
	n    int64
	hit  func()
}

func (m *midWriter) Write(p []byte) (int, error) {
	before := m.n
	n, err := m.w.Write(p)
	m.n += int64(n)
	if before < m.half && m.n >= m.half {
		m.hit()
	}
	return n, err
}
