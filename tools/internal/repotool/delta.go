package repotool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/delta"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Delta publishing, with its limits.
const (
	// MaxDeltaShare: a delta larger than this share of its full image is
	// not published (the full image serves a device as well).
	MaxDeltaShare = 0.5
	// MaxDeltaBases bounds the bases one publish makes deltas from.
	MaxDeltaBases = 8
	// DeltaExt is the file name extension of delta targets.
	DeltaExt = ".vdelta"
)

// DeltaResult is one published delta.
type DeltaResult struct {
	Target      string  `json:"target"`
	BaseVersion string  `json:"base_version"`
	BaseSHA256  string  `json:"base_sha256"`
	Length      int64   `json:"length"`
	SHA256      string  `json:"sha256"`
	Share       float64 `json:"share_of_image"` // Length over the full image's length
}

type deltaTarget struct {
	newTarget
	name string
}

type deltaSet struct {
	targets  []deltaTarget
	results  []DeltaResult
	warnings []string
	dir      string
}

func (d *deltaSet) cleanup() {
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// DeltaName is the target file name of the delta of image name from base
// version: NAME.from-BASE.vdelta.
func DeltaName(name, baseVersion string) string { return name + ".from-" + baseVersion + DeltaExt }

// deltaBases picks the versions to make deltas from: the named ones (each
// must be a published full image) and the newest last full releases older
// than this one.
func deltaBases(cur *metadata.Metadata[metadata.TargetsType], o PublishOptions) (map[string]string, []string, error) {
	full := map[string]string{} // version → target path
	var older []string
	for p, tf := range cur.Signed.Targets {
		c, err := release.Parse(tf.Custom, o.Product)
		if err != nil || c.Kind != release.KindFull {
			continue
		}
		full[c.Version] = p
		if release.Compare(c.Version, o.Custom.Version) < 0 {
			older = append(older, c.Version)
		}
	}
	var bases []string
	for _, v := range o.DeltaFrom {
		if _, ok := full[v]; !ok {
			return nil, nil, fmt.Errorf("--delta-from %s: no full image of %s %s is published", v, o.Product, v)
		}
		if !slices.Contains(bases, v) {
			bases = append(bases, v)
		}
	}
	slices.SortFunc(older, func(a, b string) int { return release.Compare(b, a) })
	for _, v := range older[:min(len(older), max(o.DeltaFromLast, 0))] {
		if !slices.Contains(bases, v) {
			bases = append(bases, v)
		}
	}
	if len(bases) > MaxDeltaBases {
		return nil, nil, fmt.Errorf("%d delta bases; at most %d per publish", len(bases), MaxDeltaBases)
	}
	return full, bases, nil
}

// makeDeltas downloads each base image through TUF (so a compromised
// server cannot make the CLI sign a delta from an image it never
// published) and makes the delta from it to the new image.
func (s *Session) makeDeltas(ctx context.Context, cur *metadata.Metadata[metadata.TargetsType], o PublishOptions, img image) (*deltaSet, error) {
	set := &deltaSet{}
	full, bases, err := deltaBases(cur, o)
	if err != nil || len(bases) == 0 {
		return set, err
	}
	if set.dir, err = os.MkdirTemp("", "vigil-delta-"); err != nil {
		return set, err
	}
	_, targetsURL := tufclient.RepoURLs(s.Server)
	for _, v := range bases {
		path := full[v]
		tf := cur.Signed.Targets[path]
		baseSHA := hex.EncodeToString(tf.Hashes["sha256"])
		if baseSHA == img.sha256 {
			set.warnings = append(set.warnings, fmt.Sprintf("no delta from %s: it is the same image", v))
			continue
		}
		basePath := filepath.Join(set.dir, "base-"+baseSHA)
		if _, err := tufclient.Download(ctx, tufclient.NewHTTPClient(), tufclient.ConsistentTargetURL(targetsURL, path, baseSHA), tf, basePath, tufclient.Limits{}); err != nil {
			set.cleanup()
			return set, fmt.Errorf("download the base image %s (%s): %w", path, v, err)
		}
		name := DeltaName(o.Name, v)
		if err := release.ValidateFileName(name); err != nil {
			set.cleanup()
			return set, fmt.Errorf("delta from %s: %w", v, err)
		}
		out := filepath.Join(set.dir, name)
		di, err := writeDelta(basePath, img.path, out)
		if err != nil {
			set.cleanup()
			return set, fmt.Errorf("make the delta from %s: %w", v, err)
		}
		os.Remove(basePath)
		share := float64(di.length) / float64(img.length)
		if share > MaxDeltaShare {
			set.warnings = append(set.warnings, fmt.Sprintf("no delta from %s: it would be %.0f%% of the image (over %.0f%%); devices on %s take the full image", v, 100*share, 100*MaxDeltaShare, v))
			continue
		}
		c := o.Custom
		c.Kind, c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = release.KindDelta, baseSHA, img.sha256, img.length
		c.SBOM, c.SBOMSHA256 = "", ""
		set.targets = append(set.targets, deltaTarget{newTarget: newTarget{path: release.TargetPath(o.Product, name), custom: c, img: di}, name: name})
		set.results = append(set.results, DeltaResult{Target: release.TargetPath(o.Product, name), BaseVersion: v, BaseSHA256: baseSHA,
			Length: di.length, SHA256: di.sha256, Share: share})
	}
	return set, nil
}

// writeDelta makes the delta file and hashes it while writing.
func writeDelta(base, newImage, out string) (image, error) {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return image{}, err
	}
	defer f.Close()
	h := sha256.New()
	st, err := delta.Make(base, newImage, io.MultiWriter(f, h))
	if err != nil {
		return image{}, err
	}
	if err := f.Close(); err != nil {
		return image{}, err
	}
	return image{path: out, sha256: hex.EncodeToString(h.Sum(nil)), length: st.Bytes}, nil
}
