package tufclient_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/internal/tufclient"
	"github.com/vigil-ota/vigil/internal/tuftest"
)

func refresh(t *testing.T, r *tuftest.Repo) *tufclient.Client {
	t.Helper()
	c, err := tufclient.Refresh(tufclient.Config{MetadataURL: r.MetadataURL(), TargetsURL: r.TargetsURL(), Dir: filepath.Join(t.TempDir(), "tuf"), BootstrapRoot: r.TrustedRoot()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The diamond (tuf-conformance test_cached_role_is_verified_against_
// current_delegator): parent-a and parent-b both delegate a role named
// "release", each with its own key; release is signed by A's key only and
// lists a target under B's paths. go-tuf v2.4.2 caches "release" once it
// was reached through parent-a and then trusts it under parent-b without
// checking B's key. Vigil's client re-verifies each role against the
// delegator of the path it is reached through.
func TestCachedRoleIsVerifiedAgainstTheCurrentDelegator(t *testing.T) {
	r := tuftest.New(t)
	r.Delegate(metadata.TARGETS, "parent-a", []string{"team-a/*"}, false)
	r.Delegate(metadata.TARGETS, "parent-b", []string{"team-b/*"}, false)
	ka := r.Delegate("parent-a", "release", []string{"team-a/*"}, false)
	r.Delegate("parent-b", "release", []string{"team-b/*"}, false) // a different key
	r.Keys["release"] = ka                                         // signed by A's key only
	r.AddTarget("release", "team-a/trusted_root.json", []byte("trusted A"), nil)
	r.AddTarget("release", "team-b/trusted_root.json", []byte("malicious B"), nil)
	r.Publish()

	c := refresh(t, r)
	if _, err := c.TargetInfo("team-a/trusted_root.json"); err != nil {
		t.Fatalf("the target signed on the path through parent-a: %v", err)
	}
	_, err := c.TargetInfo("team-b/trusted_root.json")
	var te *tufclient.Error
	if !errors.As(err, &te) || !tufclient.IsVerification(err) {
		t.Fatalf("a role signed with parent-a's key was trusted under parent-b: %v", err)
	}
	// In the other order too: parent-b's path first finds nothing
	// trustworthy, and parent-a's path still works.
	c = refresh(t, r)
	if _, err := c.TargetInfo("team-b/trusted_root.json"); err == nil {
		t.Fatal("team-b target accepted on a fresh client")
	}
	if _, err := c.TargetInfo("team-a/trusted_root.json"); err != nil {
		t.Fatalf("team-a after team-b: %v", err)
	}
}

// A target whose only hash is sha512 (tuf-conformance
// test_download_with_hash_algorithms[hashes1]) is fetched by its sha512
// name and verified.
func TestTargetWithOnlySHA512IsFetchedAndVerified(t *testing.T) {
	r := tuftest.New(t)
	r.AddTarget(metadata.TARGETS, "target_file.txt", []byte("target file contents"), nil, "sha512")
	r.Publish()
	c := refresh(t, r)
	tf, err := c.TargetInfo("target_file.txt")
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.TargetURL(tf)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "target_file.txt")
	if _, err := tufclient.Download(t.Context(), tufclient.NewHTTPClient(), u, tf, dest, tufclient.Limits{}); err != nil {
		t.Fatal(err)
	}
}
