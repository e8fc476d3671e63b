package e2e

// Attack tests: each plays one attack from the TUF threat model against a
// running vigil-server and the real vigil-agent binary, and proves the
// attack is refused with an error naming the check, leaving the device's
// trusted metadata unchanged. Attacks on what devices download are played
// through a mirror (a plain file server with a tampered copy of the
// repository), since TUF makes no difference between a mirror and a
// compromised server.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/internal/keyfile"
)

// targetFile returns the mirror path of the only target of a release.
func targetFile(t testing.TB, m *mirror, version string) string {
	t.Helper()
	matches, _ := filepath.Glob(m.path("targets/demo-pump/*.demo-pump-" + version + ".img"))
	if len(matches) != 1 {
		t.Fatalf("target of %s in the mirror: %v", version, matches)
	}
	return matches[0]
}

func TestAttackArbitrarySoftwareTamperedImageIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.1.0", "rev-b")
	m := newMirror(t, f)
	img := targetFile(t, m, "1.1.0")
	b, _ := os.ReadFile(img)
	b[len(b)/2] ^= 0xff // same length, different bytes
	os.WriteFile(img, b, 0o644)

	d := newDevice(t, "rev-b", "1.0.0")
	code, out := d.check(t, f, m.URL, "--download")
	expectRefused(t, code, out, "target hash (arbitrary software)")
	if left, _ := filepath.Glob(filepath.Join(d.dir, "downloads", "*")); len(left) != 0 {
		t.Fatalf("a refused image was left on the device: %v", left)
	}
}

func TestAttackEndlessDataIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.1.0", "rev-b")
	m := newMirror(t, f)
	img := targetFile(t, m, "1.1.0")
	fh, _ := os.OpenFile(img, os.O_APPEND|os.O_WRONLY, 0)
	fh.Write(make([]byte, 1<<20))
	fh.Close()

	d := newDevice(t, "rev-b", "1.0.0")
	code, out := d.check(t, f, m.URL, "--download")
	expectRefused(t, code, out, "endless data")
}

func TestAttackTamperedMetadataIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.1.0", "rev-b")

	t.Run("ProductRoleEdited", func(t *testing.T) {
		m := newMirror(t, f)
		p := m.path("metadata/2.demo-pump.json")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), `"rev-b"`, `"rev-a"`, 1)), 0o644)
		d := newDevice(t, "rev-a", "1.0.0")
		code, out := d.check(t, f, m.URL)
		expectRefused(t, code, out, "metadata hash or length")
	})
	t.Run("TimestampEdited", func(t *testing.T) {
		m := newMirror(t, f)
		d := newDevice(t, "rev-b", "1.0.0")
		if code, out := d.check(t, f, f.srv.URL); code != 0 {
			t.Fatalf("clean refresh: %d %s", code, out)
		}
		before := trustedState(t, d)
		p := m.path("metadata/timestamp.json")
		var ts map[string]any
		b, _ := os.ReadFile(p)
		json.Unmarshal(b, &ts)
		ts["signed"].(map[string]any)["version"] = 99
		b, _ = json.Marshal(ts)
		os.WriteFile(p, b, 0o644)
		code, out := d.check(t, f, m.URL)
		expectRefused(t, code, out, "signature threshold")
		sameState(t, before, trustedState(t, d))
	})
}

func TestAttackFreezeExpiredTimestampIsRefused(t *testing.T) {
	const expiry = 3 * time.Second
	f := newRepo(t, nil, "--timestamp-expiry", expiry.String(), "--online-refresh-interval", "500ms")
	f.publish(t, "1.1.0", "rev-b")
	d := newDevice(t, "rev-b", "1.0.0")
	if code, out := d.check(t, f, f.srv.URL); code != 0 {
		t.Fatalf("fresh refresh: %d %s", code, out)
	}
	m := newMirror(t, f) // the attacker keeps serving this copy forever
	before := trustedState(t, d)
	time.Sleep(expiry + time.Second)
	code, out := d.check(t, f, m.URL)
	expectRefused(t, code, out, "freeze (expired metadata)")
	sameState(t, before, trustedState(t, d))

	// Meanwhile the real server kept re-signing: devices that reach it are fine.
	if code, out := d.check(t, f, f.srv.URL); code != 0 {
		t.Fatalf("the live server's timestamp was not refreshed: %d %s", code, out)
	}
}

func TestAttackSnapshotVersionRollbackIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	old := newMirror(t, f)
	f.publish(t, "1.1.0", "rev-b")
	d := newDevice(t, "rev-b", "0.9.0")
	if code, out := d.check(t, f, f.srv.URL); code != 0 {
		t.Fatalf("refresh: %d %s", code, out)
	}
	before := trustedState(t, d)
	code, out := d.check(t, f, old.URL)
	expectRefused(t, code, out, "rollback (metadata version)")
	sameState(t, before, trustedState(t, d))
}

func TestAttackMixAndMatchOldProductRoleWithNewSnapshotIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	f.publish(t, "1.1.0", "rev-b")
	m := newMirror(t, f)
	// demo-pump v3 is current; serve the older, validly signed v2 in its place.
	old, _ := os.ReadFile(m.path("metadata/2.demo-pump.json"))
	os.WriteFile(m.path("metadata/3.demo-pump.json"), old, 0o644)
	d := newDevice(t, "rev-b", "0.9.0")
	code, out := d.check(t, f, m.URL)
	expectRefused(t, code, out, "metadata hash or length")
}

func TestAttackTargetForOtherHardwareIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.1.0", "rev-c")
	d := newDevice(t, "rev-b", "1.0.0")
	code, out := d.check(t, f, f.srv.URL, "--target", "demo-pump/demo-pump-1.1.0.img", "--download")
	expectRefused(t, code, out, "hardware")
	if _, err := os.Stat(filepath.Join(d.dir, "downloads")); err == nil {
		t.Fatal("a refused release was downloaded")
	}
}

func TestAttackDowngradeIsRefusedUnlessSignedRecall(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	f.publish(t, "1.1.0", "rev-b")
	d := newDevice(t, "rev-b", "1.1.0")
	code, out := d.check(t, f, f.srv.URL, "--target", "demo-pump/demo-pump-1.0.0.img")
	expectRefused(t, code, out, "downgrade")

	// A recall signed by the product key that names 1.1.0 may replace it.
	f.publish(t, "1.0.1", "rev-b", "--downgrade-from", "1.1.0", "--severity", "critical")
	code, out = d.check(t, f, f.srv.URL, "--target", "demo-pump/demo-pump-1.0.1.img", "--download")
	if code != 0 {
		t.Fatalf("signed recall refused: %d %s", code, out)
	}
}

func TestAttackProductKeySigningOutsideItsDelegationIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	m := newMirror(t, f)
	api := client.New(f.srv.URL, testToken)

	// The product key signs a target under another product's paths.
	p, err := metadata.Targets().FromBytes(mustRead(t, m.path("metadata/2.demo-pump.json")))
	if err != nil {
		t.Fatal(err)
	}
	evil := *p.Signed.Targets["demo-pump/demo-pump-1.0.0.img"]
	p.Signed.Targets["other-pump/evil.img"] = &evil
	p.Signed.Version = 3
	pb := signWith(t, p, "product-demo-pump")

	// At the server's door.
	_, err = api.Submit(context.Background(), submitProducts(map[string][]byte{"demo-pump": pb}))
	if err == nil || !strings.Contains(err.Error(), "delegated path") {
		t.Fatalf("server accepted a target outside the delegation: %v", err)
	}

	// On the device, even when a compromised server (holding the online
	// keys) publishes it.
	compromisedPublish(t, m, "demo-pump", 3, pb)
	d := newDevice(t, "rev-b", "0.9.0")
	code, out := d.check(t, f, m.URL, "--target", "other-pump/evil.img")
	expectRefused(t, code, out, "delegated path")
}

func TestAttackWrongThresholdRootRotationIsRefused(t *testing.T) {
	f := newRepo(t, nil)
	f.publish(t, "1.0.0", "rev-b")
	d := newDevice(t, "rev-b", "0.9.0")
	if code, out := d.check(t, f, f.srv.URL); code != 0 {
		t.Fatalf("refresh: %d %s", code, out)
	}
	before := trustedState(t, d)
	m := newMirror(t, f)

	root, err := metadata.Root().FromBytes(mustRead(t, m.path("metadata/1.root.json")))
	if err != nil {
		t.Fatal(err)
	}
	root.Signed.Version = 2
	root.Signed.Roles[metadata.ROOT].Threshold = 1 // the attacker's wish
	rb := signWith(t, root, "root-1")              // one of the old threshold of 2

	_, err = client.New(f.srv.URL, testToken).Submit(context.Background(), submitRoot(rb))
	if err == nil || !strings.Contains(err.Error(), "root signature") {
		t.Fatalf("server accepted a root signed below threshold: %v", err)
	}

	os.WriteFile(m.path("metadata/2.root.json"), rb, 0o644)
	code, out := d.check(t, f, m.URL)
	expectRefused(t, code, out, "signature threshold")
	sameState(t, before, trustedState(t, d))
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signWith re-signs metadata with one keys-example key.
func signWith[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], key string) []byte {
	t.Helper()
	s, err := keyfile.Signer(filepath.Join(keysExample(t), key+".key"))
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	if _, err := md.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func submitProducts(p map[string][]byte) api.SubmitRequest {
	req := api.SubmitRequest{Products: map[string]json.RawMessage{}}
	for k, v := range p {
		req.Products[k] = v
	}
	return req
}

func submitRoot(b []byte) api.SubmitRequest { return api.SubmitRequest{Root: b} }

// compromisedPublish plays a server whose online keys are stolen (the demo
// online keys are public): it writes a product role into the mirror and
// re-signs snapshot and timestamp over it.
func compromisedPublish(t testing.TB, m *mirror, product string, version int64, role []byte) {
	t.Helper()
	os.WriteFile(m.path("metadata/"+itoa(version)+"."+product+".json"), role, 0o644)
	ts, err := metadata.Timestamp().FromBytes(mustRead(t, m.path("metadata/timestamp.json")))
	if err != nil {
		t.Fatal(err)
	}
	sv := ts.Signed.Meta["snapshot.json"].Version
	snap, err := metadata.Snapshot().FromBytes(mustRead(t, m.path("metadata/"+itoa(sv)+".snapshot.json")))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(role)
	snap.Signed.Meta[product+".json"] = &metadata.MetaFiles{Version: version, Length: int64(len(role)), Hashes: metadata.Hashes{"sha256": h[:]}}
	snap.Signed.Version = sv + 1
	sb := signWith(t, snap, "snapshot")
	os.WriteFile(m.path("metadata/"+itoa(sv+1)+".snapshot.json"), sb, 0o644)
	sh := sha256.Sum256(sb)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: sv + 1, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": sh[:]}}
	ts.Signed.Version++
	os.WriteFile(m.path("metadata/timestamp.json"), signWith(t, ts, "timestamp"), 0o644)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
