// Package tuftest serves a signed TUF repository over httptest, in the
// layout vigil-server writes (consistent snapshots: metadata/N.ROLE.json,
// targets/DIR/HASH.NAME, metadata/timestamp.json), so the TUF client, the
// agent's install engine and the CLI can be tested in-process — the way
// go-tuf's own simulator serves its updater tests.
//
// It is a test double for a repository *server*, not a stand-in for
// verification: everything it serves is really signed with ed25519 keys
// made per repository, and clients verify it with go-tuf as in the field.
// Tests change it on purpose (re-sign with a wrong key, expire a role,
// delegate one role name from two parents) to prove the client refuses.
//
// Concurrency: a Repo may be changed while clients read it; Publish swaps
// the served files under a lock.
package tuftest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Expiry is how long every role is valid after a publish.
const Expiry = 30 * 24 * time.Hour

// Key is one signing key.
type Key struct {
	Signer signature.Signer
	Public *metadata.Key
	ID     string
}

// NewKey makes an ed25519 key.
func NewKey(t testing.TB) *Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.ID()
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Signer: s, Public: k, ID: id}
}

// Repo is a repository being served.
type Repo struct {
	t  testing.TB
	mu sync.Mutex

	Root      *metadata.Metadata[metadata.RootType]
	Roles     map[string]*metadata.Metadata[metadata.TargetsType] // "targets" and delegated roles
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	// Keys signs each role; tests may replace a role's keys to sign it
	// wrongly on purpose.
	Keys map[string][]*Key

	files   map[string][]byte // served path below the server → bytes
	rootV1  []byte
	dirty   map[string]bool // roles to bump and re-sign at the next Publish
	Server  *httptest.Server
	Fetched []string // paths requested, in order
}

// New makes and serves a repository with one key per top-level role and an
// empty top-level targets role, published as version 1.
func New(t testing.TB) *Repo {
	t.Helper()
	r := &Repo{t: t, Roles: map[string]*metadata.Metadata[metadata.TargetsType]{}, Keys: map[string][]*Key{}, files: map[string][]byte{}, dirty: map[string]bool{}}
	exp := time.Now().UTC().Add(Expiry).Truncate(time.Second)
	r.Root = metadata.Root(exp)
	r.Root.Signed.ConsistentSnapshot = true
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		k := NewKey(t)
		r.Keys[role] = []*Key{k}
		if err := r.Root.Signed.AddKey(k.Public, role); err != nil {
			t.Fatal(err)
		}
	}
	r.Roles[metadata.TARGETS] = metadata.Targets(exp)
	r.Snapshot = metadata.Snapshot(exp)
	r.Timestamp = metadata.Timestamp(exp)
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Server.Close)
	r.dirty[metadata.TARGETS] = true
	r.publishRoot()
	r.rootV1 = r.files["metadata/1.root.json"]
	r.Publish()
	return r
}

// URL is the server's base URL: it serves the repository under /repo, as
// vigil-server does (tufclient.RepoURLs).
func (r *Repo) URL() string { return r.Server.URL }

// MetadataURL and TargetsURL are the repository's base URLs.
func (r *Repo) MetadataURL() string { return r.Server.URL + "/repo/metadata" }

// TargetsURL is the targets base URL.
func (r *Repo) TargetsURL() string { return r.Server.URL + "/repo/targets" }

// TrustedRoot is root version 1, what a client starts from.
func (r *Repo) TrustedRoot() []byte { return r.rootV1 }

func (r *Repo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	p := strings.TrimPrefix(req.URL.Path, "/repo/")
	r.Fetched = append(r.Fetched, p)
	b, ok := r.files[p]
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

func sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys []*Key) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(k.Signer); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *Repo) publishRoot() {
	b := sign(r.t, r.Root, r.Keys[metadata.ROOT])
	r.files[fmt.Sprintf("metadata/%d.root.json", r.Root.Signed.Version)] = b
}

// Delegate makes parent delegate paths to a new role child, with a new key
// (returned) and threshold 1. The same child name may be delegated by
// several parents: each delegation gets its own key unless keys are given.
func (r *Repo) Delegate(parent, child string, paths []string, terminating bool, keys ...*Key) []*Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.Roles[parent]
	if p == nil {
		r.t.Fatalf("tuftest: no role %q", parent)
	}
	if p.Signed.Delegations == nil {
		p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	if len(keys) == 0 {
		keys = []*Key{NewKey(r.t)}
	}
	role := metadata.DelegatedRole{Name: child, Threshold: 1, Terminating: terminating, Paths: paths, KeyIDs: []string{}}
	p.Signed.Delegations.Roles = append(p.Signed.Delegations.Roles, role)
	for _, k := range keys {
		if err := p.Signed.AddKey(k.Public, child); err != nil {
			r.t.Fatal(err)
		}
	}
	if r.Roles[child] == nil {
		r.Roles[child] = metadata.Targets(time.Now().UTC().Add(Expiry).Truncate(time.Second))
		r.Keys[child] = keys
	}
	r.dirty[parent], r.dirty[child] = true, true
	return keys
}

// AddTarget lists data as target path in role, hashed with the given
// algorithms (default sha256), with an optional custom field; the bytes are
// served under each hash's consistent-snapshot name.
func (r *Repo) AddTarget(role, path string, data []byte, custom json.RawMessage, algs ...string) *metadata.TargetFiles {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(algs) == 0 {
		algs = []string{"sha256"}
	}
	tf := &metadata.TargetFiles{Length: int64(len(data)), Hashes: metadata.Hashes{}, Path: path}
	for _, alg := range algs {
		var h []byte
		switch alg {
		case "sha256":
			s := sha256.Sum256(data)
			h = s[:]
		case "sha512":
			s := sha512.Sum512(data)
			h = s[:]
		default:
			h = []byte(alg) // an algorithm no client knows
		}
		tf.Hashes[alg] = h
		dir, name := "", path
		if i := strings.LastIndex(path, "/"); i >= 0 {
			dir, name = path[:i+1], path[i+1:]
		}
		r.files["targets/"+dir+hex.EncodeToString(h)+"."+name] = data
	}
	if custom != nil {
		c := custom
		tf.Custom = &c
	}
	r.Roles[role].Signed.Targets[path] = tf
	r.dirty[role] = true
	return tf
}

// Tamper serves data instead of the signed bytes of target path (every
// hash-named copy), as a compromised mirror would.
func (r *Repo) Tamper(path string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dir, name := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		dir, name = path[:i+1], path[i+1:]
	}
	for p := range r.files {
		if rest, ok := strings.CutPrefix(p, "targets/"+dir); ok && strings.HasSuffix(rest, "."+name) && !strings.Contains(rest, "/") {
			r.files[p] = data
		}
	}
}

// Touch marks a role to be re-signed (with its Keys) at the next Publish.
func (r *Repo) Touch(role string) {
	r.mu.Lock()
	r.dirty[role] = true
	r.mu.Unlock()
}

// Publish bumps and re-signs every changed role, then a new snapshot and
// timestamp, and serves them (timestamp last).
func (r *Repo) Publish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp := time.Now().UTC().Add(Expiry).Truncate(time.Second)
	if r.Snapshot.Signed.Meta == nil {
		r.Snapshot.Signed.Meta = map[string]*metadata.MetaFiles{}
	}
	for role := range r.dirty {
		md := r.Roles[role]
		if r.files[fmt.Sprintf("metadata/%d.%s.json", md.Signed.Version, role)] != nil {
			md.Signed.Version++
		}
		md.Signed.Expires = exp
		b := sign(r.t, md, r.Keys[role])
		r.files[fmt.Sprintf("metadata/%d.%s.json", md.Signed.Version, role)] = b
		r.Snapshot.Signed.Meta[role+".json"] = &metadata.MetaFiles{Version: md.Signed.Version}
	}
	r.dirty = map[string]bool{}
	if r.files[fmt.Sprintf("metadata/%d.snapshot.json", r.Snapshot.Signed.Version)] != nil {
		r.Snapshot.Signed.Version++
	}
	r.Snapshot.Signed.Expires = exp
	sb := sign(r.t, r.Snapshot, r.Keys[metadata.SNAPSHOT])
	r.files[fmt.Sprintf("metadata/%d.snapshot.json", r.Snapshot.Signed.Version)] = sb
	if r.files["metadata/timestamp.json"] != nil {
		r.Timestamp.Signed.Version++
	}
	r.Timestamp.Signed.Expires = exp
	h := sha256.Sum256(sb)
	r.Timestamp.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": {Version: r.Snapshot.Signed.Version, Length: int64(len(sb)), Hashes: metadata.Hashes{"sha256": h[:]}}}
	r.files["metadata/timestamp.json"] = sign(r.t, r.Timestamp, r.Keys[metadata.TIMESTAMP])
}
