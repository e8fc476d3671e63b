package tufrepo

import (
	"context"
	"time"

	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// releaseChanges compares each submitted product role with the published
// one: the releases it adds and the releases it removes (a revoke: the
// release engineer re-signed the role without them).
func (r *Repo) releaseChanges(ctx context.Context, cur map[string]state.RoleVersion, files []file) (added, removed []release.Published, err error) {
	for _, f := range files {
		if isTopLevel(f.role) || f.parsed == nil {
			continue
		}
		before := map[string]release.Published{}
		if v, ok := cur[f.role]; ok {
			old, err := r.loadTargets(ctx, f.role, v.Version)
			if err != nil {
				return nil, nil, err
			}
			for _, p := range publishedOf(f.role, old) {
				before[p.Custom.Version] = p
			}
		}
		for _, p := range publishedOf(f.role, f.parsed) {
			if _, ok := before[p.Custom.Version]; !ok {
				added = append(added, p)
			}
			delete(before, p.Custom.Version)
		}
		for _, p := range before {
			removed = append(removed, p)
		}
	}
	return added, removed, nil
}

// noteReleases records the changes in the publish transaction.
func noteReleases(ctx context.Context, tx state.PublishTx, added, removed []release.Published, now time.Time) error {
	for _, p := range added {
		if err := tx.NoteRelease(ctx, state.ReleaseNote{Product: p.Product, Version: p.Custom.Version, Target: p.Target, Published: now}); err != nil {
			return err
		}
	}
	for _, p := range removed {
		if err := tx.NoteRelease(ctx, state.ReleaseNote{Product: p.Product, Version: p.Custom.Version, Target: p.Target, Revoked: now}); err != nil {
			return err
		}
	}
	return nil
}

// checkRevokeReason: a submission that removes releases must say why (the
// reason is audited and shown on incident timelines).
func checkRevokeReason(removed []release.Published, reason string) error {
	if len(removed) > 0 && reason == "" {
		return apperr.New(apperr.Invalid, "the submission removes %s from the signed product role (a revoke) but gives no reason", removed[0].Release()).WithField("reason")
	}
	return nil
}
