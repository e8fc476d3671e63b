package tufrepo

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
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
			before = imagesByVersion(f.role, old)
		}
		after := imagesByVersion(f.role, f.parsed)
		for _, v := range sortedKeys(after) {
			if _, ok := before[v]; !ok {
				added = append(added, after[v])
			}
		}
		for _, v := range sortedKeys(before) {
			if _, ok := after[v]; !ok {
				removed = append(removed, before[v])
			}
		}
	}
	return added, removed, nil
}

// imagesByVersion is a product role's releases (their images; an SBOM
// target describes a release, it is not one), by version.
func imagesByVersion(product string, md *metadata.Metadata[metadata.TargetsType]) map[string]release.Published {
	out := map[string]release.Published{}
	for _, p := range publishedOf(product, md) {
		if p.Custom.Kind != release.KindSBOM {
			out[p.Custom.Version] = p
		}
	}
	return out
}

// noteReleases records the changes in the publish transaction. A version
// once revoked is never published again: devices keep it on their list of
// failed releases, and the audit trail would no longer say which bytes the
// version meant.
func noteReleases(ctx context.Context, tx state.PublishTx, added, removed []release.Published, now time.Time) error {
	for _, p := range added {
		prev, err := tx.Release(ctx, p.Product, p.Custom.Version)
		switch {
		case err == nil && !prev.Revoked.IsZero():
			return refuse("revocation", "%s was revoked on %s; a revoked version is never published again: publish a new version", p.Release(), prev.Revoked.Format(time.RFC3339))
		case err != nil && !errors.Is(err, state.ErrNotFound):
			return err
		}
	}
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

// checkRevoke: a revoke names each release it withdraws (verifyProduct
// lets only their targets go) and says why (the reason is audited and
// shown on incident timelines).
func checkRevoke(req api.SubmitRequest) error {
	if len(req.Revoke) == 0 {
		return nil
	}
	if strings.TrimSpace(req.Reason) == "" {
		return apperr.New(apperr.Invalid, "the submission revokes %s but gives no reason", req.Revoke[0]).WithField("reason")
	}
	if len(req.Revoke) > MaxRevokesPerSubmission {
		return apperr.New(apperr.TooLarge, "%d releases revoked at once; the limit is %d", len(req.Revoke), MaxRevokesPerSubmission)
	}
	for _, rel := range req.Revoke {
		p, v, ok := strings.Cut(rel, "@")
		if !ok || release.ValidateProduct(p) != nil || release.ValidateVersion(v) != nil {
			return apperr.New(apperr.Invalid, "revoke %q is not PRODUCT@VERSION", rel).WithField("revoke")
		}
		if _, ok := req.Products[p]; !ok {
			return apperr.New(apperr.Invalid, "the submission revokes %s but carries no new %s role", rel, p).WithField("revoke")
		}
	}
	return nil
}

// MaxRevokesPerSubmission bounds the releases one submission revokes.
const MaxRevokesPerSubmission = 64
