package tufrepo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// refuse is a submission that failed a check; the check is named in the
// message so the release engineer knows what to fix.
func refuse(check, format string, args ...any) error {
	return apperr.New(apperr.VerificationFailed, "%s: %s", check, fmt.Sprintf(format, args...)).WithCode(api.CodeVerificationFailed)
}

func versionConflict(format string, args ...any) error {
	return apperr.New(apperr.Conflict, format, args...).WithCode(api.CodeVersionConflict)
}

func invalid(format string, args ...any) error {
	return apperr.New(apperr.Invalid, format, args...)
}

func jsonOf(v any) (json.RawMessage, error) { return json.Marshal(v) }

// verifySubmission checks a submission against the trusted state and returns
// the files to publish, in trust order (root, targets, products).
func (r *Repo) verifySubmission(ctx context.Context, cur map[string]state.RoleVersion, req api.SubmitRequest) ([]file, error) {
	now := r.now()
	var files []file
	var root *metadata.Metadata[metadata.RootType]
	rootV, initialised := cur[metadata.ROOT]
	if !initialised {
		if req.Root == nil || req.Targets == nil {
			return nil, apperr.New(apperr.Conflict, "the repository is not initialised: submit a root and a targets role first (vigil repo init)").WithCode(api.CodeNotInitialised)
		}
	} else {
		var err error
		if root, err = r.loadRoot(ctx, rootV.Version); err != nil {
			return nil, err
		}
	}

	if req.Root != nil {
		newRoot, err := metadata.Root().FromBytes(req.Root)
		if err != nil {
			return nil, invalid("root is not TUF root metadata: %v", err)
		}
		if err := r.verifyRoot(root, newRoot, now); err != nil {
			return nil, err
		}
		root = newRoot
		files = append(files, file{role: metadata.ROOT, version: newRoot.Signed.Version, data: req.Root, expires: newRoot.Signed.Expires})
	} else if err := r.checkOnlineKeys(root); err != nil {
		return nil, err
	}

	var targets *metadata.Metadata[metadata.TargetsType]
	targetsChanged := req.Targets != nil
	if targetsChanged {
		t, err := metadata.Targets().FromBytes(req.Targets)
		if err != nil {
			return nil, invalid("targets is not TUF targets metadata: %v", err)
		}
		if err := verifyTopTargets(root, t, cur, now); err != nil {
			return nil, err
		}
		targets = t
		files = append(files, file{role: metadata.TARGETS, version: t.Signed.Version, data: req.Targets, expires: t.Signed.Expires, parsed: t})
	} else {
		var err error
		if targets, err = r.loadTargets(ctx, metadata.TARGETS, cur[metadata.TARGETS].Version); err != nil {
			return nil, err
		}
		// A new root may have rotated the targets keys: the current
		// targets must still verify under it.
		if req.Root != nil {
			if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
				return nil, refuse("targets signature", "the current targets role does not verify under the new root (%v); re-sign and submit it with the root", err)
			}
		}
	}

	delegated := map[string]bool{}
	if targets.Signed.Delegations != nil {
		for _, d := range targets.Signed.Delegations.Roles {
			delegated[d.Name] = true
		}
	}
	names := make([]string, 0, len(req.Products))
	for p := range req.Products {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if !delegated[p] {
			return nil, refuse("delegation", "product role %q is not delegated by the targets role (add it with vigil repo add-product)", p)
		}
		md, err := metadata.Targets().FromBytes(req.Products[p])
		if err != nil {
			return nil, invalid("product %s is not TUF targets metadata: %v", p, err)
		}
		if err := r.verifyProduct(ctx, targets, p, md, cur, now, req.Accept, req.Revoke); err != nil {
			return nil, err
		}
		files = append(files, file{role: p, version: md.Signed.Version, data: req.Products[p], expires: md.Signed.Expires, parsed: md})
	}
	// Every delegated product needs metadata that verifies under the
	// (possibly new) delegation, and no product may silently disappear.
	for p := range delegated {
		if _, submitted := req.Products[p]; submitted {
			continue
		}
		v, ok := cur[p]
		if !ok {
			return nil, refuse("delegation", "targets delegates product %q but no %s metadata was submitted", p, p)
		}
		if targetsChanged {
			md, err := r.loadTargets(ctx, p, v.Version)
			if err != nil {
				return nil, err
			}
			if err := targets.VerifyDelegate(p, md); err != nil {
				return nil, refuse("product signature", "the current %s role does not verify under the new delegation (%v); re-sign it with the new product keys and submit it too", p, err)
			}
		}
	}
	for role := range cur {
		if !isTopLevel(role) && !delegated[role] {
			return nil, refuse("delegation", "the new targets role drops product %q; removing products is not supported", role)
		}
	}
	return files, nil
}

func (r *Repo) checkOnlineKeys(root *metadata.Metadata[metadata.RootType]) error {
	for _, role := range []string{metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if _, err := r.signerFor(root, role); err != nil {
			return err
		}
	}
	return nil
}

// signerFor is the online key of role that root names: this server's
// current key or, during a rotation, its next one.
func (r *Repo) signerFor(root *metadata.Metadata[metadata.RootType], role string) (*OnlineKey, error) {
	held := []*OnlineKey{r.o.Snapshot, r.o.NextSnapshot}
	if role == metadata.TIMESTAMP {
		held = []*OnlineKey{r.o.Timestamp, r.o.NextTimestamp}
	}
	rr := root.Signed.Roles[role]
	for _, k := range held {
		if k != nil && rr != nil && rr.Threshold == 1 && slices.Equal(rr.KeyIDs, []string{k.ID}) {
			return k, nil
		}
	}
	ids := []string{}
	for _, k := range held {
		if k != nil {
			ids = append(ids, k.ID)
		}
	}
	return nil, refuse("online keys", "root must delegate %s to exactly one of this server's %s keys (%s) with threshold 1", role, role, strings.Join(ids, " or "))
}

// onlineSigners are the snapshot and timestamp keys of the root in effect
// after this publish: the submitted root, or the published one.
func (r *Repo) onlineSigners(ctx context.Context, cur map[string]state.RoleVersion, files []file) (*OnlineKey, *OnlineKey, error) {
	var root *metadata.Metadata[metadata.RootType]
	for _, f := range files {
		if f.role == metadata.ROOT {
			md, err := metadata.Root().FromBytes(f.data)
			if err != nil {
				return nil, nil, err
			}
			root = md
		}
	}
	if root == nil {
		v, ok := cur[metadata.ROOT]
		if !ok {
			return r.o.Snapshot, r.o.Timestamp, nil
		}
		md, err := r.loadRoot(ctx, v.Version)
		if err != nil {
			return nil, nil, err
		}
		root = md
	}
	snap, err := r.signerFor(root, metadata.SNAPSHOT)
	if err != nil {
		return nil, nil, err
	}
	ts, err := r.signerFor(root, metadata.TIMESTAMP)
	return snap, ts, err
}

// verifyRoot checks a new root (TUF §5.3.4–5.3.5): version trusted+1, signed
// by a threshold of the trusted root's root keys and of its own, not expired,
// consistent snapshots on, and the online roles on this server's keys.
func (r *Repo) verifyRoot(trusted, next *metadata.Metadata[metadata.RootType], now time.Time) error {
	want := int64(1)
	if trusted != nil && next.Signed.Version == 1 {
		return apperr.New(apperr.Conflict, "the repository is already initialised (root version %d is published); to change its keys use vigil repo rotate", trusted.Signed.Version).WithCode(api.CodeAlreadyInitialised)
	}
	if trusted != nil {
		want = trusted.Signed.Version + 1
		if err := trusted.VerifyDelegate(metadata.ROOT, next); err != nil {
			return refuse("root signature", "the new root is not signed by a threshold of the current root keys: %v", err)
		}
	}
	if next.Signed.Version != want {
		return refuse("root version", "root version %d, want %d", next.Signed.Version, want)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return refuse("root signature", "the new root is not signed by a threshold of its own root keys: %v", err)
	}
	if next.Signed.IsExpired(now) {
		return refuse("root expiry", "root expires %s, in the past", next.Signed.Expires.Format(time.RFC3339))
	}
	if !next.Signed.ConsistentSnapshot {
		return refuse("root", "consistent_snapshot must be true")
	}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		rr := next.Signed.Roles[role]
		if rr == nil || rr.Threshold < 1 || len(rr.KeyIDs) < rr.Threshold {
			return refuse("root", "role %s needs at least threshold-many keys and a threshold of 1 or more", role)
		}
		for _, id := range rr.KeyIDs {
			if next.Signed.Keys[id] == nil {
				return refuse("root", "role %s names key %s that root does not list", role, id)
			}
		}
	}
	return r.checkOnlineKeys(next)
}

// verifyTopTargets checks a new top-level targets role: signed by root's
// targets threshold, version moving forward, not expired, no targets of its
// own, and one delegation per product with paths PRODUCT/* (DESIGN.md).
func verifyTopTargets(root *metadata.Metadata[metadata.RootType], t *metadata.Metadata[metadata.TargetsType], cur map[string]state.RoleVersion, now time.Time) error {
	if err := root.VerifyDelegate(metadata.TARGETS, t); err != nil {
		return refuse("targets signature", "targets is not signed by a threshold of root's targets keys: %v", err)
	}
	if err := checkNextVersion(metadata.TARGETS, t.Signed.Version, cur); err != nil {
		return err
	}
	if t.Signed.IsExpired(now) {
		return refuse("targets expiry", "targets expires %s, in the past", t.Signed.Expires.Format(time.RFC3339))
	}
	if len(t.Signed.Targets) > 0 {
		return refuse("targets", "the top-level targets role only delegates; it lists %d targets of its own", len(t.Signed.Targets))
	}
	d := t.Signed.Delegations
	if d == nil {
		return nil
	}
	if d.SuccinctRoles != nil {
		return refuse("delegation", "succinct hash-bin delegations are not used by Vigil")
	}
	seen := map[string]bool{}
	for _, role := range d.Roles {
		if err := release.ValidateProduct(role.Name); err != nil {
			return refuse("delegation", "%v", err)
		}
		if seen[role.Name] {
			return refuse("delegation", "product %s is delegated twice", role.Name)
		}
		seen[role.Name] = true
		if len(role.PathHashPrefixes) > 0 || !slices.Equal(role.Paths, []string{role.Name + "/*"}) {
			return refuse("delegation", "product %s must be delegated exactly the paths [%q]", role.Name, role.Name+"/*")
		}
		if !role.Terminating {
			return refuse("delegation", "the delegation to %s must be terminating", role.Name)
		}
		if role.Threshold < 1 || len(role.KeyIDs) < role.Threshold {
			return refuse("delegation", "product %s: threshold %d with %d keys", role.Name, role.Threshold, len(role.KeyIDs))
		}
		for _, id := range role.KeyIDs {
			if d.Keys[id] == nil {
				return refuse("delegation", "product %s names key %s that the delegations do not list", role.Name, id)
			}
		}
	}
	return nil
}

// verifyProduct checks a new product role against its delegation and the
// stored images (TUF §5.6.6, plus Vigil's release schema).
func (r *Repo) verifyProduct(ctx context.Context, targets *metadata.Metadata[metadata.TargetsType], product string, md *metadata.Metadata[metadata.TargetsType], cur map[string]state.RoleVersion, now time.Time, accept []api.AcceptedVulnerability, revoke []string) error {
	if err := targets.VerifyDelegate(product, md); err != nil {
		return refuse("product signature", "%s is not signed by a threshold of its delegated keys: %v", product, err)
	}
	if err := checkNextVersion(product, md.Signed.Version, cur); err != nil {
		return err
	}
	var previous *metadata.Metadata[metadata.TargetsType]
	if v, ok := cur[product]; ok {
		var err error
		if previous, err = r.loadTargets(ctx, product, v.Version); err != nil {
			return err
		}
	}
	if md.Signed.IsExpired(now) {
		return refuse("product expiry", "%s expires %s, in the past", product, md.Signed.Expires.Format(time.RFC3339))
	}
	if md.Signed.Delegations != nil && (len(md.Signed.Delegations.Roles) > 0 || md.Signed.Delegations.SuccinctRoles != nil) {
		return refuse("delegation", "product role %s may not delegate further", product)
	}
	var role *metadata.DelegatedRole
	for i := range targets.Signed.Delegations.Roles {
		if targets.Signed.Delegations.Roles[i].Name == product {
			role = &targets.Signed.Delegations.Roles[i]
		}
	}
	fresh := map[string]*release.Custom{} // new targets, verified below
	for path, tf := range md.Signed.Targets {
		if ok, err := role.IsDelegatedPath(path); err != nil || !ok {
			return refuse("delegated path", "target %q is outside the paths delegated to %s (%v)", path, product, role.Paths)
		}
		p, fileName, err := release.SplitTargetPath(path)
		if err != nil || p != product {
			return refuse("target path", "target %q: %v", path, err)
		}
		if previous != nil {
			if old, ok := previous.Signed.Targets[path]; ok && sameTarget(old, tf) {
				continue // already verified when it was published
			}
		}
		if err := checkHashes(path, tf); err != nil {
			return err
		}
		c, err := release.Parse(tf.Custom, product)
		if err != nil {
			return refuse("release schema", "target %q: %v", path, err)
		}
		fresh[path] = c
		if tf.Length <= 0 || tf.Length > MaxTargetLength {
			return refuse("target length", "target %q: length %d is not between 1 and %d bytes", path, tf.Length, int64(MaxTargetLength))
		}
		key := TargetKey(product, hexOf(tf.Hashes["sha256"]), fileName)
		info, err := r.blobs.Stat(ctx, key)
		if errors.Is(err, blob.ErrNotFound) {
			return refuse("target upload", "target %q: no uploaded image with sha256 %s; upload it first", path, hexOf(tf.Hashes["sha256"]))
		}
		if err != nil {
			return err
		}
		if info.Size != tf.Length {
			return refuse("target length", "target %q: signed length %d, but the stored image is %d bytes", path, tf.Length, info.Size)
		}
	}
	if previous != nil {
		// Published releases are immutable: none may disappear or change.
		// Withdrawing one is the revocation path's job, not an edit: the
		// submission names each release it revokes (with a reason), and
		// only their targets may go.
		revoked := map[string]bool{}
		for _, path := range sortedPaths(previous.Signed.Targets) {
			tf, ok := md.Signed.Targets[path]
			if !ok {
				if c, err := release.Parse(previous.Signed.Targets[path].Custom, product); err == nil && slices.Contains(revoke, product+"@"+c.Version) {
					revoked[product+"@"+c.Version] = true
					continue
				}
				return refuse("release immutability", "published target %q is missing from the new %s role; published releases cannot be removed by re-signing (withdraw one through revocation)", path, product)
			}
			if !sameTarget(previous.Signed.Targets[path], tf) {
				return refuse("release immutability", "published target %q changed (length, hashes or signed release fields); published releases are immutable: publish a new version instead", path)
			}
		}
		for _, rel := range revoke {
			if p, _, _ := strings.Cut(rel, "@"); p == product && !revoked[rel] {
				return refuse("revocation", "the submission revokes %s, but the new %s role still holds it (or it was never published)", rel, product)
			}
		}
	}
	// One target per (version, kind) — deltas: per base too — so a
	// rollout of a version never has to choose between two images; and a
	// delta must rebuild exactly the full image of its own version.
	seen := map[[3]string]string{}
	full := map[string]*metadata.TargetFiles{}
	var deltas []string
	for _, path := range sortedPaths(md.Signed.Targets) {
		c, err := release.Parse(md.Signed.Targets[path].Custom, product)
		if err != nil {
			return refuse("release schema", "target %q: %v", path, err)
		}
		k := [3]string{c.Version, c.Kind, c.DeltaBaseSHA256}
		if other, dup := seen[k]; dup {
			return refuse("release schema", "targets %q and %q are both version %s (kind %s) of %s; one target per version and kind (and, for deltas, per base)", other, path, c.Version, c.Kind, product)
		}
		seen[k] = path
		switch c.Kind {
		case release.KindFull:
			full[c.Version] = md.Signed.Targets[path]
		case release.KindDelta:
			deltas = append(deltas, path)
		}
	}
	for _, path := range deltas {
		c, _ := release.Parse(md.Signed.Targets[path].Custom, product)
		img, ok := full[c.Version]
		if !ok {
			return refuse("release schema", "delta %q is for version %s of %s, which has no full image in the role", path, c.Version, product)
		}
		if hexOf(img.Hashes["sha256"]) != c.ResultSHA256 || img.Length != c.ResultLength {
			return refuse("release schema", "delta %q rebuilds %s (%d bytes), but the full image of %s is %s (%d bytes)", path, c.ResultSHA256, c.ResultLength, c.Version, hexOf(img.Hashes["sha256"]), img.Length)
		}
	}
	return r.checkSBOMLinks(ctx, product, md, fresh, accept)
}

// MaxVersionStep is how far an offline role's version may move in one
// submission: exactly one. A signed jump to a huge version would otherwise
// block the role for good (no version can follow 2^63-1).
const MaxVersionStep = 1

// checkNextVersion refuses a role version that does not follow the
// published one: an older or equal version is a conflict (re-read and sign
// again), a jump is refused; a new role starts at 1.
func checkNextVersion(role string, v int64, cur map[string]state.RoleVersion) error {
	have := int64(0)
	if pv, ok := cur[role]; ok {
		have = pv.Version
	}
	if have > 0 && v <= have {
		return versionConflict("%s version %d does not move past the published %d; re-read the repository and sign again", role, v, have)
	}
	if v < 1 || v-have > MaxVersionStep {
		return refuse("version", "%s version %d, want %d: an offline role moves one version at a time", role, v, have+1)
	}
	return nil
}

func sortedPaths(m map[string]*metadata.TargetFiles) []string {
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func sameTarget(a, b *metadata.TargetFiles) bool {
	if a.Length != b.Length || !a.Hashes.Equal(b.Hashes) {
		return false
	}
	if (a.Custom == nil) != (b.Custom == nil) {
		return false
	}
	return a.Custom == nil || bytes.Equal(*a.Custom, *b.Custom)
}

func checkHashes(path string, tf *metadata.TargetFiles) error {
	h, ok := tf.Hashes["sha256"]
	if !ok || len(h) != 32 {
		return refuse("target hashes", "target %q must carry a sha256 hash", path)
	}
	for alg := range tf.Hashes {
		if alg != "sha256" {
			return refuse("target hashes", "target %q carries %s; Vigil publishes sha256 only", path, alg)
		}
	}
	return nil
}

func hexOf(b []byte) string { return fmt.Sprintf("%x", b) }
