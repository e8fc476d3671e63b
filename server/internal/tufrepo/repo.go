// Package tufrepo is Vigil's TUF repository: it verifies signed metadata
// made offline by release engineers, signs snapshot and timestamp with the
// server's online keys, and writes the repository to a blob store in the
// layout any TUF client reads (consistent snapshots: metadata/N.ROLE.json,
// targets/PRODUCT/SHA256.FILE, metadata/timestamp.json).
//
// Threat model. The server holds only the online keys (snapshot, timestamp).
// Root, targets and product keys never reach it, so a compromised server can
// delay updates or re-offer an older signed release, but cannot make a device
// accept anything a release engineer did not sign. The server still checks
// every submission as a client would (signatures and thresholds along the
// delegation chain, versions moving forward, expiries, path patterns, the
// release schema, each target's stored length and hash) so that a bad
// submission is refused at the door, not by every device later.
//
// Consistency. A publish runs under the state store's publish lock (one at a
// time across all replicas), writes every new file under a new versioned
// name first and timestamp.json last, then commits the new versions. Until
// timestamp.json changes no client can see any new file, so a failed publish
// leaves the repository at its last good version. The database's versions are
// the source of truth; metadata files are immutable once referenced.
//
// Spec references are to the TUF specification v1.0.31 (§5 client workflow,
// §4 document formats).
package tufrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Expiries and limits, with their units.
const (
	DefaultTimestampExpiry = 24 * time.Hour
	DefaultSnapshotExpiry  = 7 * 24 * time.Hour
	// RefreshFraction: online metadata is re-signed once less than this
	// fraction of its lifetime remains.
	RefreshFraction = 3 // i.e. a third
	// MaxTargetLength is the largest image the repository accepts, in bytes.
	MaxTargetLength = 64 << 30
	// MaxMetadataLength is the largest metadata file, in bytes: a product
	// role of about 40,000 releases. Checked on every submitted file
	// before it is parsed.
	MaxMetadataLength = 16 << 20
	// MaxSubmitBytes bounds a whole submission body, in bytes.
	MaxSubmitBytes = 2*MaxMetadataLength + 1<<20
	// MaxProductsPerSubmission bounds the product roles in one submission.
	MaxProductsPerSubmission = 64
	// MaxConcurrentVerifications bounds submissions verified at once on
	// one replica; more wait their turn (signature checks of large roles
	// cost CPU and memory).
	MaxConcurrentVerifications = 2
	// parsedCacheEntries bounds the cache of parsed immutable role files.
	parsedCacheEntries = 64

	metadataDir = "metadata/"
	targetsDir  = "targets/"
)

// Options configure a Repo.
type Options struct {
	Snapshot  *OnlineKey
	Timestamp *OnlineKey
	// NextSnapshot and NextTimestamp are the keys an online-key rotation
	// moves to (nil: none pending). The server signs with whichever key
	// the root in effect names, so a root that names the next keys takes
	// effect with the publish that carries it (docs/key-ceremony.md).
	NextSnapshot    *OnlineKey
	NextTimestamp   *OnlineKey
	TimestampExpiry time.Duration
	SnapshotExpiry  time.Duration
	Now             func() time.Time
	Log             *zap.Logger
	// Audit records every publish and upload (nil: not recorded).
	Audit audit.Recorder
	// SBOMGate checks new releases' SBOMs (nil: not checked).
	SBOMGate SBOMGate
	// Published is told, after a publish commits, which product roles it
	// changed (vigilance indexes their new SBOMs); nil: nobody.
	Published func(ctx context.Context, products []string)
	// Revoked is told, after a publish commits, which releases it removed
	// from their product roles (the fleet halts their rollouts); nil:
	// nobody.
	Revoked func(ctx context.Context, removed []release.Published, reason string)
}

// Repo is the repository. It is safe for concurrent use; all coordination
// goes through the state store, so any number of replicas may share one
// database and bucket.
type Repo struct {
	st    state.RepoStore
	blobs blob.Store
	o     Options

	mu    sync.Mutex
	cache map[string]*metadata.Metadata[metadata.TargetsType]
	// cls is ClassifyTarget's index of served paths.
	clsMu sync.Mutex
	cls   map[string]classified
	// verifying holds a slot per submission being verified.
	verifying chan struct{}
}

// New returns a repository on st and blobs. Without online keys it serves
// what is published but refuses submissions.
func New(st state.RepoStore, blobs blob.Store, o Options) *Repo {
	if o.TimestampExpiry == 0 {
		o.TimestampExpiry = DefaultTimestampExpiry
	}
	if o.SnapshotExpiry == 0 {
		o.SnapshotExpiry = DefaultSnapshotExpiry
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Repo{st: st, blobs: blobs, o: o, cache: map[string]*metadata.Metadata[metadata.TargetsType]{}, verifying: make(chan struct{}, MaxConcurrentVerifications)}
}

// Signing reports whether the online keys are configured.
func (r *Repo) Signing() bool { return r.o.Snapshot != nil && r.o.Timestamp != nil }

func (r *Repo) now() time.Time { return r.o.Now().UTC().Truncate(time.Second) }

var errNotSigning = apperr.New(apperr.Unavailable, "repository signing is not configured on this server: set snapshot_key and timestamp_key").WithCode(api.CodeSigningNotConfigured)

// OnlineKeys returns the public online keys for building a root.
func (r *Repo) OnlineKeys() (api.OnlineKeys, error) {
	if !r.Signing() {
		return api.OnlineKeys{}, errNotSigning
	}
	sk, err := jsonOf(r.o.Snapshot.Key)
	if err != nil {
		return api.OnlineKeys{}, err
	}
	tk, err := jsonOf(r.o.Timestamp.Key)
	if err != nil {
		return api.OnlineKeys{}, err
	}
	out := api.OnlineKeys{Snapshot: sk, SnapshotID: r.o.Snapshot.ID, Timestamp: tk, TimestampID: r.o.Timestamp.ID}
	if r.o.NextSnapshot != nil && r.o.NextTimestamp != nil {
		if out.NextSnapshot, err = jsonOf(r.o.NextSnapshot.Key); err != nil {
			return api.OnlineKeys{}, err
		}
		if out.NextTimestamp, err = jsonOf(r.o.NextTimestamp.Key); err != nil {
			return api.OnlineKeys{}, err
		}
		out.NextSnapshotID, out.NextTimestampID = r.o.NextSnapshot.ID, r.o.NextTimestamp.ID
	}
	return out, nil
}

func metaKey(role string, version int64) string {
	return metadataDir + strconv.FormatInt(version, 10) + "." + role + ".json"
}

// TargetKey is the blob key of a target file: consistent-snapshot naming,
// targets/PRODUCT/SHA256.FILE (TUF §5.7.3).
func TargetKey(product, sha256hex, file string) string {
	return targetsDir + product + "/" + sha256hex + "." + file
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// readBlob reads a whole metadata file (bounded by MaxMetadataLength).
func (r *Repo) readBlob(ctx context.Context, key string) ([]byte, error) {
	rc, info, err := r.blobs.Get(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if info.Size > MaxMetadataLength {
		return nil, apperr.New(apperr.Internal, "metadata file %s is %d bytes, over the limit", key, info.Size)
	}
	return io.ReadAll(rc)
}

func (r *Repo) loadRoot(ctx context.Context, version int64) (*metadata.Metadata[metadata.RootType], error) {
	b, err := r.readBlob(ctx, metaKey(metadata.ROOT, version))
	if err != nil {
		return nil, fmt.Errorf("load trusted root v%d: %w", version, err)
	}
	return metadata.Root().FromBytes(b)
}

// loadTargets reads a targets or product role file; files are immutable, so
// parsed copies are cached by role and version.
func (r *Repo) loadTargets(ctx context.Context, role string, version int64) (*metadata.Metadata[metadata.TargetsType], error) {
	k := role + "@" + strconv.FormatInt(version, 10)
	r.mu.Lock()
	md, ok := r.cache[k]
	r.mu.Unlock()
	if ok {
		return md, nil
	}
	b, err := r.readBlob(ctx, metaKey(role, version))
	if err != nil {
		return nil, fmt.Errorf("load %s v%d: %w", role, version, err)
	}
	md, err = metadata.Targets().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s v%d: %w", role, version, err)
	}
	r.remember(k, md)
	return md, nil
}

func (r *Repo) remember(k string, md *metadata.Metadata[metadata.TargetsType]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= parsedCacheEntries {
		for old := range r.cache {
			delete(r.cache, old)
			break
		}
	}
	r.cache[k] = md
}

// file is one metadata file a publish writes.
type file struct {
	role    string
	version int64
	data    []byte
	expires time.Time
	// parsed is the verified targets-type metadata, cached once the
	// publish commits, so the next publish need not parse it again.
	parsed *metadata.Metadata[metadata.TargetsType]
}

func (f file) record() state.RoleVersion {
	return state.RoleVersion{Role: f.role, Version: f.version, SHA256: digest(f.data), Length: int64(len(f.data)), Expires: f.expires}
}

// Submit verifies signed offline metadata and publishes it, with a new
// snapshot and timestamp, as one repository version. An empty repository
// takes a root and a targets role (initialisation). It returns every role's
// version after the publish.
//
// Cost bounds (docs/security.md, finding 3): every file is size-checked
// before it is parsed; verification runs before the publish lock is taken
// (so a slow or hostile submission never holds the database's writer), at
// most MaxConcurrentVerifications at a time; under the lock it is repeated
// only if another publish moved the repository meanwhile.
func (r *Repo) Submit(ctx context.Context, req api.SubmitRequest) (map[string]int64, error) {
	if !r.Signing() {
		return nil, errNotSigning
	}
	if req.Root == nil && req.Targets == nil && len(req.Products) == 0 {
		return nil, apperr.New(apperr.Invalid, "the submission holds no metadata")
	}
	if err := checkSizes(req); err != nil {
		return nil, err
	}
	if err := input.Text("reason", req.Reason, input.MaxComment); err != nil {
		return nil, err
	}
	if req.Incident != "" {
		if err := input.Identifier("incident", req.Incident); err != nil {
			return nil, err
		}
	}
	if err := checkRevoke(req); err != nil {
		return nil, err
	}
	select {
	case r.verifying <- struct{}{}:
		defer func() { <-r.verifying }()
	case <-ctx.Done():
		return nil, apperr.Wrap(ctx.Err(), apperr.Unavailable, "the server is busy verifying other submissions; try again")
	}
	all, err := r.st.RoleVersions(ctx)
	if err != nil {
		return nil, err
	}
	verifiedAt := make(map[string]state.RoleVersion, len(all))
	for _, v := range all {
		verifiedAt[v.Role] = v
	}
	files, err := r.verifySubmission(ctx, verifiedAt, req)
	if err != nil {
		return nil, err
	}
	var out map[string]int64
	var undo func(context.Context)
	var added, removed []release.Published
	err = r.st.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
		cur, err := currentVersions(ctx, tx)
		if err != nil {
			return err
		}
		if !sameVersions(cur, verifiedAt) { // another publish came first
			if files, err = r.verifySubmission(ctx, cur, req); err != nil {
				return err
			}
		}
		if added, removed, err = r.releaseChanges(ctx, cur, files); err != nil {
			return err
		}
		if out, undo, err = r.publish(ctx, tx, cur, files, true); err != nil {
			return err
		}
		return noteReleases(ctx, tx, added, removed, r.now())
	})
	if err != nil {
		if undo != nil {
			undo(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	for _, f := range files {
		if f.parsed != nil {
			r.remember(f.role+"@"+strconv.FormatInt(f.version, 10), f.parsed)
		}
	}
	r.o.Log.Info("repository published", zap.Any("versions", out))
	var roles []string
	for _, f := range files {
		roles = append(roles, f.role+"@v"+strconv.FormatInt(f.version, 10))
	}
	r.record(ctx, "repo.publish", strings.Join(roles, ","), map[string]any{"versions": out, "incident": req.Incident})
	for _, f := range files {
		if f.role == metadata.ROOT && f.version > 1 { // v1 is the repository's initialisation
			details := map[string]any{"version": f.version, "incident": req.Incident, "reason": req.Reason}
			if md, err := metadata.Root().FromBytes(f.data); err == nil {
				details["snapshot_keyids"], details["timestamp_keyids"] = md.Signed.Roles[metadata.SNAPSHOT].KeyIDs, md.Signed.Roles[metadata.TIMESTAMP].KeyIDs
				details["root_keyids"] = md.Signed.Roles[metadata.ROOT].KeyIDs
			}
			r.record(ctx, "repo.rotate", "root@v"+strconv.FormatInt(f.version, 10), details)
		}
	}
	for _, p := range added {
		r.record(ctx, "release.publish", p.Release(), map[string]any{"target": p.Target, "sha256": p.SHA256, "severity": p.Custom.Severity,
			"downgrade_from": p.Custom.DowngradeFrom, "incident": req.Incident, "reason": req.Reason})
	}
	for _, p := range removed {
		r.record(ctx, "release.revoke", p.Release(), map[string]any{"target": p.Target, "sha256": p.SHA256, "incident": req.Incident, "reason": req.Reason})
	}
	if r.o.Revoked != nil && len(removed) > 0 {
		r.o.Revoked(context.WithoutCancel(ctx), removed, req.Reason)
	}
	for _, a := range req.Accept {
		r.record(ctx, "release.accept_known_vulnerability", a.ID, map[string]any{"reason": a.Reason, "products": sortedKeys(req.Products)})
	}
	if r.o.Published != nil && len(req.Products) > 0 {
		r.o.Published(context.WithoutCancel(ctx), sortedKeys(req.Products))
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Limits of a submission's accepted vulnerabilities.
const (
	MaxAccepted        = 100
	MaxAcceptReasonLen = 2000
	// MinAcceptReasonLen: a reason is a sentence, not "ok".
	MinAcceptReasonLen = 10
)

// checkSizes refuses a submission with a file over MaxMetadataLength or too
// many product roles, before anything is parsed.
func checkSizes(req api.SubmitRequest) error {
	if len(req.Products) > MaxProductsPerSubmission {
		return apperr.New(apperr.TooLarge, "%d product roles in one submission; the limit is %d", len(req.Products), MaxProductsPerSubmission)
	}
	check := func(name string, b []byte) error {
		if len(b) > MaxMetadataLength {
			return apperr.New(apperr.TooLarge, "%s metadata is %d bytes; the limit is %d", name, len(b), MaxMetadataLength).WithCode(api.CodeMetadataTooLarge)
		}
		return nil
	}
	if err := check("root", req.Root); err != nil {
		return err
	}
	if err := check("targets", req.Targets); err != nil {
		return err
	}
	for p, b := range req.Products {
		if err := check(p, b); err != nil {
			return err
		}
	}
	return checkAccepted(req.Accept)
}

// checkAccepted validates the accepted vulnerabilities: bounded, each an
// id with a real reason, none twice.
func checkAccepted(acc []api.AcceptedVulnerability) error {
	if len(acc) > MaxAccepted {
		return apperr.New(apperr.TooLarge, "%d accepted vulnerabilities in one submission; the limit is %d", len(acc), MaxAccepted)
	}
	seen := map[string]bool{}
	for _, a := range acc {
		switch {
		case a.ID == "" || len(a.ID) > vigilance.MaxIDLength || strings.ContainsAny(a.ID, " \t\r\n"):
			return apperr.New(apperr.Invalid, "accepted vulnerability id %q is not an id", a.ID)
		case seen[a.ID]:
			return apperr.New(apperr.Invalid, "vulnerability %s is accepted twice", a.ID)
		case len(strings.TrimSpace(a.Reason)) < MinAcceptReasonLen || len(a.Reason) > MaxAcceptReasonLen:
			return apperr.New(apperr.Invalid, "accepting %s needs a reason of %d to %d bytes", a.ID, MinAcceptReasonLen, MaxAcceptReasonLen)
		}
		seen[a.ID] = true
	}
	return nil
}

func sameVersions(a, b map[string]state.RoleVersion) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.Version != v.Version || w.SHA256 != v.SHA256 {
			return false
		}
	}
	return true
}

func currentVersions(ctx context.Context, tx state.PublishTx) (map[string]state.RoleVersion, error) {
	all, err := tx.RoleVersions(ctx)
	if err != nil {
		return nil, err
	}
	cur := make(map[string]state.RoleVersion, len(all))
	for _, v := range all {
		cur[v.Role] = v
	}
	return cur, nil
}

func isTopLevel(role string) bool {
	switch role {
	case metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP:
		return true
	}
	return false
}

// publish writes files, a new snapshot and a new timestamp (last), and
// records the new versions in tx. newSnapshot=false re-signs only the
// timestamp.
func (r *Repo) publish(ctx context.Context, tx state.PublishTx, cur map[string]state.RoleVersion, files []file, newSnapshot bool) (out map[string]int64, undo func(context.Context), err error) {
	now := r.now()
	snapKey, tsKey, err := r.onlineSigners(ctx, cur, files)
	if err != nil {
		return nil, nil, err
	}
	next := map[string]state.RoleVersion{}
	for k, v := range cur {
		next[k] = v
	}
	for _, f := range files {
		next[f.role] = f.record()
	}
	if newSnapshot {
		snap := metadata.Snapshot(now.Add(r.o.SnapshotExpiry))
		snap.Signed.Version = cur[metadata.SNAPSHOT].Version + 1
		snap.Signed.Meta = map[string]*metadata.MetaFiles{}
		for role, v := range next {
			if role == metadata.TARGETS || !isTopLevel(role) {
				snap.Signed.Meta[role+".json"] = metaFile(v)
			}
		}
		b, err := signAndEncode(snap, snapKey)
		if err != nil {
			return nil, nil, err
		}
		f := file{role: metadata.SNAPSHOT, version: snap.Signed.Version, data: b, expires: snap.Signed.Expires}
		files = append(files, f)
		next[metadata.SNAPSHOT] = f.record()
	}
	ts := metadata.Timestamp(now.Add(r.o.TimestampExpiry))
	ts.Signed.Version = cur[metadata.TIMESTAMP].Version + 1
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metaFile(next[metadata.SNAPSHOT])}
	tsData, err := signAndEncode(ts, tsKey)
	if err != nil {
		return nil, nil, err
	}

	// Every new file first, under names no client has been pointed at yet.
	for _, f := range files {
		if err := r.put(ctx, metaKey(f.role, f.version), f.data); err != nil {
			return nil, nil, err
		}
		if f.role == metadata.ROOT {
			// root.json: the newest root under a fixed name, for
			// bootstrapping and `curl`; clients walk N.root.json.
			if err := r.put(ctx, metadataDir+"root.json", f.data); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, f := range files {
		if err := tx.SetRoleVersion(ctx, f.record()); err != nil {
			return nil, nil, err
		}
	}
	tsFile := file{role: metadata.TIMESTAMP, version: ts.Signed.Version, data: tsData, expires: ts.Signed.Expires}
	if err := tx.SetRoleVersion(ctx, tsFile.record()); err != nil {
		return nil, nil, err
	}
	// The timestamp last: this write makes the new version visible. If
	// the commit then fails, undo puts the previous timestamp back.
	previous, prevErr := r.readBlob(ctx, metadataDir+"timestamp.json")
	if prevErr != nil && !errors.Is(prevErr, blob.ErrNotFound) {
		return nil, nil, prevErr
	}
	if err := r.put(ctx, metadataDir+"timestamp.json", tsData); err != nil {
		return nil, nil, err
	}
	undo = func(ctx context.Context) {
		var err error
		if prevErr != nil {
			err = r.blobs.Delete(ctx, metadataDir+"timestamp.json")
		} else {
			err = r.put(ctx, metadataDir+"timestamp.json", previous)
		}
		r.o.Log.Error("publish did not commit; previous timestamp restored", zap.Error(err))
	}
	out = map[string]int64{}
	for role, v := range next {
		out[role] = v.Version
	}
	out[metadata.TIMESTAMP] = ts.Signed.Version
	return out, undo, nil
}

func metaFile(v state.RoleVersion) *metadata.MetaFiles {
	h, _ := hex.DecodeString(v.SHA256)
	return &metadata.MetaFiles{Version: v.Version, Length: v.Length, Hashes: metadata.Hashes{"sha256": h}}
}

func (r *Repo) put(ctx context.Context, key string, data []byte) error {
	return r.blobs.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

// signAndEncode signs an online role with its key (TUF §4.2: signatures
// over the canonical JSON of "signed").
func signAndEncode[T metadata.Roles](md *metadata.Metadata[T], k *OnlineKey) ([]byte, error) {
	md.ClearSignatures()
	if _, err := md.Sign(k.Signer); err != nil {
		return nil, apperr.Wrap(err, apperr.Unavailable, "online key %s cannot sign", k.ID)
	}
	return md.ToBytes(true)
}

// record appends to the audit log; a failure is logged, not returned, since
// the action itself already happened.
func (r *Repo) record(ctx context.Context, action, subject string, details any) {
	if r.o.Audit == nil {
		return
	}
	if _, err := audit.Record(ctx, r.o.Audit, action, subject, details); err != nil {
		r.o.Log.Error("audit entry not written", zap.String("action", action), zap.String("subject", subject), zap.Error(err))
	}
}

// RefreshOnline re-signs the timestamp, and the snapshot, when less than a
// third of their lifetime remains. Any replica may call it at any time: the
// publish lock and the expiry check make extra calls harmless. It reports
// whether it published.
func (r *Repo) RefreshOnline(ctx context.Context) (bool, error) {
	if !r.Signing() {
		return false, nil
	}
	refreshed := false
	var undo func(context.Context)
	err := r.st.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
		cur, err := currentVersions(ctx, tx)
		if err != nil {
			return err
		}
		ts, ok := cur[metadata.TIMESTAMP]
		if !ok {
			return nil // not initialised
		}
		now := r.now()
		snapDue := now.After(cur[metadata.SNAPSHOT].Expires.Add(-r.o.SnapshotExpiry / RefreshFraction))
		tsDue := now.After(ts.Expires.Add(-r.o.TimestampExpiry / RefreshFraction))
		if !snapDue && !tsDue {
			return nil
		}
		var err2 error
		if _, undo, err2 = r.publish(ctx, tx, cur, nil, snapDue); err2 != nil {
			return err2
		}
		refreshed = true
		return nil
	})
	if err != nil {
		if undo != nil {
			undo(context.WithoutCancel(ctx))
		}
		return false, err
	}
	if refreshed {
		r.o.Log.Info("online metadata re-signed before expiry")
	}
	return refreshed, nil
}

// RunRefresher calls RefreshOnline every interval until ctx ends.
func (r *Repo) RunRefresher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.RefreshOnline(ctx); err != nil && ctx.Err() == nil {
			r.o.Log.Warn("re-signing online metadata failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// servedKey maps a repository path to its blob key; anything outside the
// two areas, or not a clean key, is simply not there.
func servedKey(area, path string) (string, error) {
	if area != "metadata" && area != "targets" {
		return "", apperr.New(apperr.NotFound, "no repository area %q", area)
	}
	key := area + "/" + strings.TrimPrefix(path, "/")
	if err := blob.ValidateKey(key); err != nil {
		return "", fmt.Errorf("%w: %v", blob.ErrNotFound, err)
	}
	return key, nil
}

// Open serves a repository file: area is "metadata" or "targets".
func (r *Repo) Open(ctx context.Context, area, path string, rng *blob.Range) (io.ReadCloser, blob.Info, error) {
	key, err := servedKey(area, path)
	if err != nil {
		return nil, blob.Info{}, err
	}
	return r.blobs.Get(ctx, key, rng)
}

// Stat describes a repository file without reading it.
func (r *Repo) Stat(ctx context.Context, area, path string) (blob.Info, error) {
	key, err := servedKey(area, path)
	if err != nil {
		return blob.Info{}, err
	}
	return r.blobs.Stat(ctx, key)
}

// ErrHashMismatch is returned when an upload's bytes do not hash to the
// declared sha256.
var ErrHashMismatch = errors.New("uploaded bytes do not match the declared sha256")

// MaxClassified bounds the served-path index ClassifyTarget keeps, in
// entries; past it the index starts again.
const MaxClassified = 100_000

type classified struct {
	product, version, kind string
	ok                     bool
	role                   int64 // for a path not (yet) signed: the role version that said so
}

// ClassifyTarget names the release and kind of a served targets-area path
// (PRODUCT/SHA256.FILE) from the product's signed role. Paths are content
// addressed, so an answer never changes: the index is read once per
// product role version that holds a path not seen before.
func (r *Repo) ClassifyTarget(ctx context.Context, path string) (product, version, kind string, ok bool) {
	path = strings.TrimPrefix(path, "/")
	r.clsMu.Lock()
	c, hit := r.cls[path]
	r.clsMu.Unlock()
	if hit && c.ok {
		return c.product, c.version, c.kind, true
	}
	product, _, found := strings.Cut(path, "/")
	if !found || release.ValidateProduct(product) != nil {
		return "", "", "", false
	}
	v, err := r.st.RoleVersion(ctx, product)
	if err != nil || hit && c.role == v.Version {
		return "", "", "", false
	}
	md, err := r.loadTargets(ctx, product, v.Version)
	if err != nil {
		return "", "", "", false
	}
	r.clsMu.Lock()
	defer r.clsMu.Unlock()
	if r.cls == nil || len(r.cls) > MaxClassified {
		r.cls = map[string]classified{}
	}
	for tp, tf := range md.Signed.Targets {
		cu, err := release.Parse(tf.Custom, product)
		if err != nil {
			continue
		}
		_, file, _ := strings.Cut(tp, "/")
		r.cls[product+"/"+hexOf(tf.Hashes["sha256"])+"."+file] = classified{product: product, version: cu.Version, kind: cu.Kind, ok: true}
	}
	c, hit = r.cls[path]
	if !hit {
		r.cls[path] = classified{role: v.Version} // not a signed target (yet): counted as other
	}
	return c.product, c.version, c.kind, c.ok
}

// ReleaseDeltas maps each installed version that a published delta of a
// product's version applies to (its base is that version's full image) to
// the delta's target path.
func (r *Repo) ReleaseDeltas(ctx context.Context, product, version string) (map[string]string, error) {
	v, err := r.st.RoleVersion(ctx, product)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return nil, nil
		}
		return nil, err
	}
	md, err := r.loadTargets(ctx, product, v.Version)
	if err != nil {
		return nil, err
	}
	full := map[string]string{} // full image sha256 → version
	var deltas []*release.Custom
	var paths []string
	for path, tf := range md.Signed.Targets {
		c, err := release.Parse(tf.Custom, product)
		if err != nil {
			continue
		}
		switch {
		case c.Kind == release.KindFull:
			full[hexOf(tf.Hashes["sha256"])] = c.Version
		case c.Kind == release.KindDelta && c.Version == version:
			deltas, paths = append(deltas, c), append(paths, path)
		}
	}
	out := map[string]string{}
	for i, c := range deltas {
		if base, ok := full[c.DeltaBaseSHA256]; ok {
			out[base] = paths[i]
		}
	}
	return out, nil
}

// ReleaseTarget finds the published target of a product's version, and its
// signed severity, in the current product role.
func (r *Repo) ReleaseTarget(ctx context.Context, product, version string) (string, string, error) {
	v, err := r.st.RoleVersion(ctx, product)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return "", "", apperr.New(apperr.NotFound, "product %q is not in the repository", product)
		}
		return "", "", err
	}
	md, err := r.loadTargets(ctx, product, v.Version)
	if err != nil {
		return "", "", err
	}
	// One full image per version (verifyProduct); paths in order anyway,
	// so the answer never depends on map order.
	paths := make([]string, 0, len(md.Signed.Targets))
	for path := range md.Signed.Targets {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		c, err := release.Parse(md.Signed.Targets[path].Custom, product)
		if err == nil && c.Version == version && c.Kind == release.KindFull {
			return path, c.Severity, nil
		}
	}
	return "", "", apperr.New(apperr.NotFound, "%s@%s is not published", product, version)
}
