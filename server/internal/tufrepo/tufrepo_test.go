package tufrepo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/blob/localblob"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
	"github.com/vigil-ota/vigil/test/testsvc"
)

func keyPath(t testing.TB, name string) string {
	root, err := testsvc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "keys-example", name+".key")
}

func signer(t testing.TB, name string) signature.Signer {
	s, err := keyfile.Signer(keyPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tufKey(t testing.TB, s signature.Signer) *metadata.Key {
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], signers ...signature.Signer) []byte {
	md.ClearSignatures()
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is a repository on SQLite and a local directory with demo-pump.
type fixture struct {
	st    state.Store
	blobs blob.Store
	repo  *tufrepo.Repo
	clock *clock
	opts  tufrepo.Options
	role  *metadata.Metadata[metadata.TargetsType] // demo-pump as last submitted
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newFixture(t testing.TB, snap, ts *tufrepo.OnlineKey) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs, err := localblob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	if snap == nil {
		snap = onlineKey(t, keyPath(t, "snapshot"))
		ts = onlineKey(t, keyPath(t, "timestamp"))
	}
	f := &fixture{st: st, blobs: bs, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	f.opts = tufrepo.Options{Snapshot: snap, Timestamp: ts, Now: f.clock.Now}
	f.repo = tufrepo.New(st, bs, f.opts)

	exp := f.clock.Now().Add(365 * 24 * time.Hour)
	root := metadata.Root(exp)
	roots := []signature.Signer{signer(t, "root-1"), signer(t, "root-2"), signer(t, "root-3")}
	for _, s := range roots {
		root.Signed.AddKey(tufKey(t, s), metadata.ROOT)
	}
	root.Signed.Roles[metadata.ROOT].Threshold = 2
	root.Signed.AddKey(tufKey(t, signer(t, "targets")), metadata.TARGETS)
	root.Signed.AddKey(snap.Key, metadata.SNAPSHOT)
	root.Signed.AddKey(ts.Key, metadata.TIMESTAMP)
	targets := metadata.Targets(exp)
	targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{
		{Name: "demo-pump", Threshold: 1, Terminating: true, Paths: []string{"demo-pump/*"}, KeyIDs: []string{}},
	}}
	targets.Signed.AddKey(tufKey(t, signer(t, "product-demo-pump")), "demo-pump")
	f.role = metadata.Targets(exp)
	_, err = f.repo.Submit(context.Background(), api.SubmitRequest{
		Root:     sign(t, root, roots[0], roots[1]),
		Targets:  sign(t, targets, signer(t, "targets")),
		Products: map[string]json.RawMessage{"demo-pump": sign(t, f.role, signer(t, "product-demo-pump"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func onlineKey(t testing.TB, ref string) *tufrepo.OnlineKey {
	k, err := tufrepo.LoadOnlineKey(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publish uploads an image and submits the next demo-pump role with it.
func (f *fixture) publish(t testing.TB, version string) error {
	img := []byte("image " + version)
	sum := sha256.Sum256(img)
	name := "demo-pump-" + version + ".img"
	if _, err := f.repo.Upload(context.Background(), "demo-pump", name, hexs(sum[:]), int64(len(img)), bytes.NewReader(img)); err != nil {
		return err
	}
	c, _ := json.Marshal(release.Custom{Product: "demo-pump", Version: version, Hardware: []string{"rev-b"}, Kind: "full", Severity: "routine", Cycle: "regular"})
	raw := json.RawMessage(c)
	f.role.Signed.Targets["demo-pump/"+name] = &metadata.TargetFiles{Length: int64(len(img)), Hashes: metadata.Hashes{"sha256": sum[:]}, Custom: &raw}
	f.role.Signed.Version++
	_, err := f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, f.role, signer(t, "product-demo-pump"))}})
	return err
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

func readTimestamp(t testing.TB, bs blob.Store) *metadata.Metadata[metadata.TimestampType] {
	t.Helper()
	rc, _, err := bs.Get(context.Background(), "metadata/timestamp.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	ts, err := metadata.Timestamp().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestTimestampIsResignedWhenAThirdOfItsLifetimeRemainsOncePerDueAcrossReplicas(t *testing.T) {
	f := newFixture(t, nil, nil)
	other := tufrepo.New(f.st, f.blobs, f.opts) // a second replica
	v0 := readTimestamp(t, f.blobs).Signed.Version

	for _, r := range []*tufrepo.Repo{f.repo, other} {
		if did, err := r.RefreshOnline(context.Background()); err != nil || did {
			t.Fatalf("fresh timestamp re-signed: %v %v", did, err)
		}
	}
	f.clock.Add(tufrepo.DefaultTimestampExpiry*2/3 + time.Minute)
	var wg sync.WaitGroup
	results := make(chan bool, 2)
	for _, r := range []*tufrepo.Repo{f.repo, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			did, err := r.RefreshOnline(context.Background())
			if err != nil {
				t.Error(err)
			}
			results <- did
		}()
	}
	wg.Wait()
	close(results)
	n := 0
	for did := range results {
		if did {
			n++
		}
	}
	ts := readTimestamp(t, f.blobs)
	if n != 1 || ts.Signed.Version != v0+1 {
		t.Fatalf("%d replicas re-signed; timestamp v%d, want exactly one re-sign to v%d", n, ts.Signed.Version, v0+1)
	}
	if !ts.Signed.Expires.After(f.clock.Now().Add(tufrepo.DefaultTimestampExpiry - time.Minute)) {
		t.Fatalf("re-signed timestamp expires %v", ts.Signed.Expires)
	}
}

func TestSnapshotIsResignedBeforeItExpires(t *testing.T) {
	f := newFixture(t, nil, nil)
	s0 := readTimestamp(t, f.blobs).Signed.Meta["snapshot.json"].Version
	f.clock.Add(tufrepo.DefaultSnapshotExpiry*2/3 + time.Minute)
	if did, err := f.repo.RefreshOnline(context.Background()); err != nil || !did {
		t.Fatalf("refresh: %v %v", did, err)
	}
	if s1 := readTimestamp(t, f.blobs).Signed.Meta["snapshot.json"].Version; s1 != s0+1 {
		t.Fatalf("snapshot v%d, want v%d", s1, s0+1)
	}
}

func TestOnlineKeysFromFakeKMSSignAVerifiableRepository(t *testing.T) {
	snap := onlineKey(t, "fakekms://snapshot")
	ts := onlineKey(t, "fakekms://timestamp")
	if snap.Key.Type != "ecdsa" {
		t.Fatalf("KMS key type %s, want ecdsa", snap.Key.Type)
	}
	f := newFixture(t, snap, ts)
	if err := f.publish(t, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	tsmd := readTimestamp(t, f.blobs)
	rc, _, _ := f.blobs.Get(context.Background(), "metadata/1.root.json", nil)
	b, _ := io.ReadAll(rc)
	rc.Close()
	root, _ := metadata.Root().FromBytes(b)
	if err := root.VerifyDelegate(metadata.TIMESTAMP, tsmd); err != nil {
		t.Fatalf("timestamp signed by the KMS key does not verify: %v", err)
	}
}

func TestUploadWithWrongHashStoresNothing(t *testing.T) {
	f := newFixture(t, nil, nil)
	img := []byte("the real image")
	wrong := sha256.Sum256([]byte("something else"))
	_, err := f.repo.Upload(context.Background(), "demo-pump", "x.img", hexs(wrong[:]), int64(len(img)), bytes.NewReader(img))
	if !apperr.Is(err, apperr.VerificationFailed) || !strings.Contains(err.Error(), "nothing was stored") {
		t.Fatalf("got %v", err)
	}
	for info, err := range f.blobs.List(context.Background(), "targets/") {
		t.Fatalf("an upload with a wrong hash left %v (%v)", info.Key, err)
	}
	if _, err := f.repo.Upload(context.Background(), "no-such-product", "x.img", hexs(wrong[:]), 1, bytes.NewReader([]byte("x"))); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("upload to an unknown product: %v", err)
	}
}

// failingBlobs fails Puts of one key, to play a storage outage mid-publish.
type failingBlobs struct {
	blob.Store
	failKey string
}

func (f *failingBlobs) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasSuffix(key, f.failKey) {
		return apperr.New(apperr.Unavailable, "injected failure writing %s", key)
	}
	return f.Store.Put(ctx, key, r, size)
}

func TestFailedPublishLeavesTheRepositoryAtItsLastGoodVersion(t *testing.T) {
	f := newFixture(t, nil, nil)
	if err := f.publish(t, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	before := readTimestamp(t, f.blobs)
	versionsBefore, _ := f.st.RoleVersions(context.Background())
	for _, failing := range []string{"snapshot.json", "timestamp.json", ".demo-pump.json"} {
		broken := tufrepo.New(f.st, &failingBlobs{Store: f.blobs, failKey: failing}, f.opts)
		f.repo = broken
		err := f.publish(t, "1.1.0-"+strings.Trim(strings.ReplaceAll(failing, ".", ""), "-"))
		f.role.Signed.Version-- // the submission did not land
		delete(f.role.Signed.Targets, "demo-pump/demo-pump-1.1.0-"+strings.Trim(strings.ReplaceAll(failing, ".", ""), "-")+".img")
		if !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("failing %s: got %v", failing, err)
		}
		after := readTimestamp(t, f.blobs)
		if after.Signed.Version != before.Signed.Version {
			t.Fatalf("failing %s: timestamp moved from v%d to v%d", failing, before.Signed.Version, after.Signed.Version)
		}
		versionsAfter, _ := f.st.RoleVersions(context.Background())
		if len(versionsAfter) != len(versionsBefore) {
			t.Fatalf("failing %s: recorded versions changed", failing)
		}
		for i := range versionsAfter {
			if versionsAfter[i].Version != versionsBefore[i].Version {
				t.Fatalf("failing %s: %s moved to v%d", failing, versionsAfter[i].Role, versionsAfter[i].Version)
			}
		}
	}
}

// commitFails runs the publish function and then fails, as a lost database
// connection at COMMIT would.
type commitFails struct{ state.Store }

func (c commitFails) Publish(ctx context.Context, fn func(context.Context, state.PublishTx) error) error {
	err := c.Store.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return errors.New("injected: connection lost at commit")
	})
	return err
}

func TestCommitFailureRestoresThePreviousTimestamp(t *testing.T) {
	f := newFixture(t, nil, nil)
	before := readTimestamp(t, f.blobs)
	f.repo = tufrepo.New(commitFails{f.st}, f.blobs, f.opts)
	if err := f.publish(t, "1.0.0"); err == nil {
		t.Fatal("publish succeeded although the commit failed")
	}
	after := readTimestamp(t, f.blobs)
	if after.Signed.Version != before.Signed.Version {
		t.Fatalf("timestamp v%d after a failed commit, want the previous v%d", after.Signed.Version, before.Signed.Version)
	}
}

func TestSubmissionsAreCheckedAlongTheDelegationChain(t *testing.T) {
	f := newFixture(t, nil, nil)
	exp := f.clock.Now().Add(time.Hour)
	cases := map[string]struct {
		req  func() api.SubmitRequest
		want string
	}{
		"product signed by the wrong key": {func() api.SubmitRequest {
			p := metadata.Targets(exp)
			p.Signed.Version = 2
			return api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, p, signer(t, "targets"))}}
		}, "product signature"},
		"product not delegated": {func() api.SubmitRequest {
			p := metadata.Targets(exp)
			return api.SubmitRequest{Products: map[string]json.RawMessage{"infusion": sign(t, p, signer(t, "product-demo-pump"))}}
		}, "not delegated"},
		"expired product role": {func() api.SubmitRequest {
			p := metadata.Targets(f.clock.Now().Add(-time.Hour))
			p.Signed.Version = 2
			return api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, p, signer(t, "product-demo-pump"))}}
		}, "product expiry"},
		"target not uploaded": {func() api.SubmitRequest {
			p := metadata.Targets(exp)
			p.Signed.Version = 2
			c := json.RawMessage(`{"product":"demo-pump","version":"9.0.0","hardware":["rev-b"],"kind":"full","severity":"routine","cycle":"regular"}`)
			p.Signed.Targets["demo-pump/ghost.img"] = &metadata.TargetFiles{Length: 10, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Custom: &c}
			return api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, p, signer(t, "product-demo-pump"))}}
		}, "target upload"},
		"bad release schema": {func() api.SubmitRequest {
			p := metadata.Targets(exp)
			p.Signed.Version = 2
			c := json.RawMessage(`{"product":"demo-pump","version":"nine","hardware":["rev-b"],"kind":"full","severity":"routine","cycle":"regular"}`)
			p.Signed.Targets["demo-pump/x.img"] = &metadata.TargetFiles{Length: 10, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Custom: &c}
			return api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, p, signer(t, "product-demo-pump"))}}
		}, "release schema"},
		"stale version": {func() api.SubmitRequest {
			p := metadata.Targets(exp)
			p.Signed.Version = 1
			return api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, p, signer(t, "product-demo-pump"))}}
		}, "does not move past"},
		"empty submission": {func() api.SubmitRequest { return api.SubmitRequest{} }, "no metadata"},
	}
	for name, c := range cases {
		_, err := f.repo.Submit(context.Background(), c.req())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %q", name, err, c.want)
		}
	}
}

func TestSecondInitIsAConflict(t *testing.T) {
	f := newFixture(t, nil, nil)
	root := metadata.Root(f.clock.Now().Add(time.Hour))
	_, err := f.repo.Submit(context.Background(), api.SubmitRequest{Root: sign(t, root, signer(t, "root-1"))})
	if err == nil || !strings.Contains(err.Error(), "root") {
		t.Fatalf("re-initialising: %v", err)
	}
}

func TestOpenAnswersNotFoundForPathsOutsideTheRepository(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, c := range [][2]string{{"targets", "../metadata/timestamp.json"}, {"metadata", "/../../etc/passwd"}, {"secrets", "x"}, {"metadata", "9.root.json"}} {
		if _, _, err := f.repo.Open(context.Background(), c[0], c[1], nil); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("Open(%q, %q): %v, want NotFound", c[0], c[1], err)
		}
	}
	rc, _, err := f.repo.Open(context.Background(), "metadata", "/timestamp.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}

// nextRole returns a copy of the last published demo-pump role, one
// version on, for editing.
func (f *fixture) nextRole(t testing.TB) *metadata.Metadata[metadata.TargetsType] {
	b, err := f.role.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.Targets().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Version++
	return md
}

func (f *fixture) submitRole(t testing.TB, md *metadata.Metadata[metadata.TargetsType]) error {
	_, err := f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, md, signer(t, "product-demo-pump"))}})
	return err
}

// Finding 5: the server, not only the CLI, keeps releases immutable and one
// target per version and kind, so a rollout never picks between two images.
func TestServerKeepsPublishedReleasesImmutable(t *testing.T) {
	f := newFixture(t, nil, nil)
	if err := f.publish(t, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	path := "demo-pump/demo-pump-1.0.0.img"
	cases := map[string]func(md *metadata.Metadata[metadata.TargetsType]){
		"second target of the same version": func(md *metadata.Metadata[metadata.TargetsType]) {
			tf := *md.Signed.Targets[path]
			md.Signed.Targets["demo-pump/demo-pump-1.0.0-again.img"] = &tf
		},
		"re-signed hardware": func(md *metadata.Metadata[metadata.TargetsType]) {
			c := json.RawMessage(strings.Replace(string(*md.Signed.Targets[path].Custom), `"rev-b"`, `"rev-b","rev-z"`, 1))
			tf := *md.Signed.Targets[path]
			tf.Custom = &c
			md.Signed.Targets[path] = &tf
		},
		"removed target": func(md *metadata.Metadata[metadata.TargetsType]) { delete(md.Signed.Targets, path) },
	}
	for name, mutate := range cases {
		md := f.nextRole(t)
		mutate(md)
		err := f.submitRole(t, md)
		if !apperr.Is(err, apperr.VerificationFailed) {
			t.Errorf("%s: accepted or wrongly refused: %v", name, err)
		}
	}
	target, _, err := f.repo.ReleaseTarget(context.Background(), "demo-pump", "1.0.0")
	if err != nil || target != path {
		t.Fatalf("the release changed: %s %v", target, err)
	}
}

// Finding 6: a signed jump to version 2^63-1 would block the role for good.
func TestServerRefusesVersionJumps(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, v := range []int64{3, 1 << 40, math.MaxInt64} {
		md := f.nextRole(t)
		md.Signed.Version = v
		if err := f.submitRole(t, md); !apperr.Is(err, apperr.VerificationFailed) || !strings.Contains(err.Error(), "one version at a time") {
			t.Errorf("version %d: %v", v, err)
		}
	}
	if err := f.publish(t, "1.0.0"); err != nil {
		t.Fatalf("the next version after refused jumps: %v", err)
	}
}

// Finding 3: an oversized file is refused by size before it is parsed, and
// a submission that fails verification never takes the publish lock (it
// used to hold SQLite's only writer for its whole verification).
func TestOversizedOrBadSubmissionsNeverReachThePublishLock(t *testing.T) {
	f := newFixture(t, nil, nil)
	counted := &countingPublish{Store: f.st}
	f.repo = tufrepo.New(counted, f.blobs, f.opts)
	huge := json.RawMessage(`{"signed":"` + strings.Repeat("x", tufrepo.MaxMetadataLength) + `"}`)
	_, err := f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": huge}})
	if !apperr.Is(err, apperr.TooLarge) {
		t.Fatalf("oversized product role: %v", err)
	}
	md := f.nextRole(t)
	_, err = f.repo.Submit(context.Background(), api.SubmitRequest{Products: map[string]json.RawMessage{"demo-pump": sign(t, md, signer(t, "targets"))}})
	if !apperr.Is(err, apperr.VerificationFailed) {
		t.Fatalf("badly signed role: %v", err)
	}
	if n := counted.n.Load(); n != 0 {
		t.Fatalf("refused submissions took the publish lock %d times", n)
	}
	if err := f.publish(t, "1.0.0"); err != nil || counted.n.Load() != 1 {
		t.Fatalf("a good submission: %v (%d locks)", err, counted.n.Load())
	}
}

type countingPublish struct {
	state.Store
	n atomic.Int32
}

func (c *countingPublish) Publish(ctx context.Context, fn func(context.Context, state.PublishTx) error) error {
	c.n.Add(1)
	return c.Store.Publish(ctx, fn)
}

type abortingReader struct{ left int }

func (a *abortingReader) Read(p []byte) (int, error) {
	if a.left <= 0 {
		return 0, io.ErrUnexpectedEOF // the client went away
	}
	n := min(len(p), a.left)
	a.left -= n
	return n, nil
}

// Finding 13: an upload the client abandons is the client's problem: a
// 4xx that names it, nothing stored — not a 500 with a stack trace.
func TestAnAbortedUploadIsTheClientsErrorAndStoresNothing(t *testing.T) {
	f := newFixture(t, nil, nil)
	_, err := f.repo.Upload(context.Background(), "demo-pump", "x.img", strings.Repeat("a", 64), 1000, &abortingReader{left: 300})
	if !apperr.Is(err, apperr.Invalid) || !strings.Contains(err.Error(), "ended after 300 of 1000 bytes") {
		t.Fatalf("got %v", err)
	}
	if _, err := f.blobs.Stat(context.Background(), tufrepo.TargetKey("demo-pump", strings.Repeat("a", 64), "x.img")); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a partial upload was stored: %v", err)
	}
}

// An upload whose publish never came is removed once it is older than the
// age; what a role lists stays, and the repository still serves it.
func TestOrphanedUploadsAreRemovedAndPublishedOnesStay(t *testing.T) {
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	if err := f.publish(t, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	orphan := []byte("an image whose publish failed")
	sum := sha256.Sum256(orphan)
	if _, err := f.repo.Upload(ctx, "demo-pump", "demo-pump-1.1.0.img", hexs(sum[:]), int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		for range f.blobs.List(ctx, "targets/") {
			n++
		}
		return n
	}
	if n, err := f.repo.RemoveOrphanUploads(ctx, tufrepo.DefaultOrphanAge); err != nil || n != 0 || count() != 2 {
		t.Fatalf("a fresh upload was removed: %d %v, %d left", n, err, count())
	}
	f.clock.Add(tufrepo.DefaultOrphanAge + time.Hour)
	if n, err := f.repo.RemoveOrphanUploads(ctx, tufrepo.DefaultOrphanAge); err != nil || n != 1 || count() != 1 {
		t.Fatalf("removed %d (%v), %d left", n, err, count())
	}
	pub := sha256.Sum256([]byte("image 1.0.0"))
	rc, _, err := f.repo.Open(ctx, "targets", "demo-pump/"+hexs(pub[:])+".demo-pump-1.0.0.img", nil)
	if err != nil {
		t.Fatalf("the published image is gone: %v", err)
	}
	rc.Close()
	if n, _ := f.repo.RemoveOrphanUploads(ctx, tufrepo.DefaultOrphanAge); n != 0 {
		t.Fatal("a second sweep removed more")
	}
}

// The revocation path lets exactly the named releases leave the product
// role, with a reason, and nothing else; a hostile or sloppy revoke list
// changes nothing.
func TestARevokeRemovesOnlyTheNamedReleasesWithAReason(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if err := f.publish(t, v); err != nil {
			t.Fatal(err)
		}
	}
	without := func(paths ...string) *metadata.Metadata[metadata.TargetsType] {
		md := f.nextRole(t)
		for _, p := range paths {
			delete(md.Signed.Targets, p)
		}
		return md
	}
	submit := func(md *metadata.Metadata[metadata.TargetsType], reason string, revoke ...string) error {
		_, err := f.repo.Submit(context.Background(), api.SubmitRequest{Reason: reason, Revoke: revoke,
			Products: map[string]json.RawMessage{"demo-pump": sign(t, md, signer(t, "product-demo-pump"))}})
		return err
	}
	p100, p110 := "demo-pump/demo-pump-1.0.0.img", "demo-pump/demo-pump-1.1.0.img"
	for name, c := range map[string]struct {
		err    error
		kind   apperr.Kind
		reason string
	}{
		"no reason":                  {submit(without(p110), "", "demo-pump@1.1.0"), apperr.Invalid, "no reason"},
		"names a release it keeps":   {submit(without(), "bad build", "demo-pump@1.1.0"), apperr.VerificationFailed, "still holds it"},
		"drops one it does not name": {submit(without(p100, p110), "bad build", "demo-pump@1.1.0"), apperr.VerificationFailed, "release immutability"},
		"not PRODUCT@VERSION":        {submit(without(p110), "bad build", "demo-pump"), apperr.Invalid, "not PRODUCT@VERSION"},
		"another product's role":     {submit(without(p110), "bad build", "other-pump@1.0.0"), apperr.Invalid, "carries no new other-pump role"},
		"a reason with escapes":      {submit(without(p110), "bad\x1b[2J", "demo-pump@1.1.0"), apperr.Invalid, "control character"},
	} {
		if !apperr.Is(c.err, c.kind) || !strings.Contains(c.err.Error(), c.reason) {
			t.Errorf("%s: %v, want %v naming %q", name, c.err, c.kind, c.reason)
		}
	}
	if _, _, err := f.repo.ReleaseTarget(context.Background(), "demo-pump", "1.1.0"); err != nil {
		t.Fatalf("a refused revoke removed the release: %v", err)
	}
	md := without(p110)
	if err := submit(md, "boot loop on rev-b", "demo-pump@1.1.0"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.repo.ReleaseTarget(context.Background(), "demo-pump", "1.1.0"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("the revoked release is still published: %v", err)
	}
	if _, _, err := f.repo.ReleaseTarget(context.Background(), "demo-pump", "1.0.0"); err != nil {
		t.Fatalf("the other release went too: %v", err)
	}
}

// addDelta uploads a "delta" and adds it to md as a delta target of
// version from the image of base.
func (f *fixture) addDelta(t testing.TB, md *metadata.Metadata[metadata.TargetsType], version, base string, mutate func(*release.Custom)) string {
	data := []byte("delta " + base + " to " + version)
	sum := sha256.Sum256(data)
	name := "demo-pump-" + version + ".img.from-" + base + ".vdelta"
	if _, err := f.repo.Upload(context.Background(), "demo-pump", name, hexs(sum[:]), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	baseImg, img := []byte("image "+base), []byte("image "+version)
	bs, is := sha256.Sum256(baseImg), sha256.Sum256(img)
	c := release.Custom{Product: "demo-pump", Version: version, Hardware: []string{"rev-b"}, Kind: release.KindDelta, Severity: "routine", Cycle: "regular",
		DeltaBaseSHA256: hexs(bs[:]), ResultSHA256: hexs(is[:]), ResultLength: int64(len(img))}
	if mutate != nil {
		mutate(&c)
	}
	raw, _ := json.Marshal(c)
	r := json.RawMessage(raw)
	md.Signed.Targets["demo-pump/"+name] = &metadata.TargetFiles{Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": sum[:]}, Custom: &r}
	return "demo-pump/" + name
}

// A delta must rebuild the full image of its own version; one delta per
// base; the repository names, for each installed version, the delta that
// applies to it, and classifies served files by release and kind.
func TestDeltasMustRebuildTheirVersionsImageAndAreNamedByBase(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, v := range []string{"1.0.0", "1.0.1", "1.1.0"} {
		if err := f.publish(t, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range map[string]struct {
		edit func(md *metadata.Metadata[metadata.TargetsType])
		want string
	}{
		"a delta that rebuilds another image": {func(md *metadata.Metadata[metadata.TargetsType]) {
			f.addDelta(t, md, "1.1.0", "1.0.0", func(c *release.Custom) { c.ResultLength++ })
		}, "but the full image of 1.1.0"},
		"a delta of a version without an image": {func(md *metadata.Metadata[metadata.TargetsType]) {
			f.addDelta(t, md, "1.2.0", "1.0.0", nil)
		}, "no full image"},
		"two deltas from one base": {func(md *metadata.Metadata[metadata.TargetsType]) {
			p := f.addDelta(t, md, "1.1.0", "1.0.0", nil)
			tf := *md.Signed.Targets[p]
			data := []byte("delta 1.0.0 to 1.1.0")
			f.repo.Upload(context.Background(), "demo-pump", "again.vdelta", hexs(tf.Hashes["sha256"]), int64(len(data)), bytes.NewReader(data))
			md.Signed.Targets["demo-pump/again.vdelta"] = &tf
		}, "one target per version and kind"},
	} {
		md := f.nextRole(t)
		c.edit(md)
		if err := f.submitRole(t, md); !apperr.Is(err, apperr.VerificationFailed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	md := f.nextRole(t)
	d0 := f.addDelta(t, md, "1.1.0", "1.0.0", nil)
	d1 := f.addDelta(t, md, "1.1.0", "1.0.1", nil)
	if err := f.submitRole(t, md); err != nil {
		t.Fatalf("two deltas from two bases: %v", err)
	}
	f.role = md
	ctx := context.Background()
	got, err := f.repo.ReleaseDeltas(ctx, "demo-pump", "1.1.0")
	if err != nil || len(got) != 2 || got["1.0.0"] != d0 || got["1.0.1"] != d1 {
		t.Fatalf("deltas of 1.1.0: %v %v", got, err)
	}
	sum := sha256.Sum256([]byte("delta 1.0.0 to 1.1.0"))
	if p, v, k, ok := f.repo.ClassifyTarget(ctx, "/demo-pump/"+hexs(sum[:])+".demo-pump-1.1.0.img.from-1.0.0.vdelta"); !ok || p != "demo-pump" || v != "1.1.0" || k != release.KindDelta {
		t.Fatalf("classify the delta: %s %s %s %v", p, v, k, ok)
	}
	img := sha256.Sum256([]byte("image 1.0.1"))
	if _, v, k, ok := f.repo.ClassifyTarget(ctx, "demo-pump/"+hexs(img[:])+".demo-pump-1.0.1.img"); !ok || v != "1.0.1" || k != release.KindFull {
		t.Fatalf("classify an image: %s %s %v", v, k, ok)
	}
	for _, p := range []string{"demo-pump/ff.nothing.img", "../etc/passwd", "NOT A PRODUCT/x", ""} {
		if _, _, _, ok := f.repo.ClassifyTarget(ctx, p); ok {
			t.Errorf("%q was classified", p)
		}
	}
}
