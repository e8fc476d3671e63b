package tufrepo

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/internal/release"
)

// DefaultOrphanAge is how long an uploaded image may stay unpublished
// before the server removes it: longer than any publish takes between its
// upload and its submission.
const DefaultOrphanAge = 24 * time.Hour

// RemoveOrphanUploads deletes uploaded target files that no version of any
// product role has ever listed and that are older than age (an upload
// whose publish failed or was abandoned). Anything a role lists, or once
// listed (a revoked release, an older role a device may still hold), stays.
// It returns how many it removed. Any replica may run it; the age keeps it
// clear of uploads whose publish is still under way.
func (r *Repo) RemoveOrphanUploads(ctx context.Context, age time.Duration) (int, error) {
	versions, err := r.st.RoleVersions(ctx)
	if err != nil {
		return 0, err
	}
	listed := map[string]bool{}
	for _, v := range versions {
		if isTopLevel(v.Role) {
			continue
		}
		for n := int64(1); n <= v.Version; n++ {
			md, err := r.loadTargets(ctx, v.Role, n)
			if err != nil {
				return 0, err
			}
			for path, tf := range md.Signed.Targets {
				_, file, err := release.SplitTargetPath(path)
				if err != nil {
					continue
				}
				for _, h := range tf.Hashes {
					listed[TargetKey(v.Role, hexOf(h), file)] = true
				}
			}
		}
	}
	cutoff := r.now().Add(-age)
	removed := 0
	for info, err := range r.blobs.List(ctx, targetsDir) {
		if err != nil {
			return removed, err
		}
		if listed[info.Key] || info.ModTime.After(cutoff) || !strings.HasPrefix(info.Key, targetsDir) {
			continue
		}
		if err := r.blobs.Delete(ctx, info.Key); err != nil {
			return removed, err
		}
		removed++
		r.o.Log.Info("orphaned upload removed (never published)", zap.String("key", info.Key), zap.Time("uploaded", info.ModTime))
	}
	if removed > 0 {
		r.record(ctx, "repo.remove_orphans", "targets", map[string]any{"removed": removed, "older_than": age.String()})
	}
	return removed, nil
}
