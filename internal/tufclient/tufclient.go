// Package tufclient is the TUF client every Vigil program uses to read the
// repository: vigil-agent on devices (and its tuf-conformance command) and
// the vigil CLI on release engineers' machines. It wraps go-tuf v2's
// Updater for metadata (TUF §5.3–5.6) and replaces go-tuf's target download,
// which buffers whole targets in memory, with a streaming one (download.go).
//
// Threat model: everything the server or a mirror sends is untrusted until
// it verifies against the trusted root kept in Dir. The client refuses
// unsigned or badly signed metadata, expired metadata (freeze), version
// rollbacks, mix-and-match snapshots, and targets whose bytes do not match
// their signed length and sha256 (arbitrary software, endless data). A
// refresh that fails leaves the trusted metadata in Dir as it was.
//
// Rules learnt from go-tuf v2.4.2 (../shared/notes/go-tuf-v2.md):
//   - an Updater refreshes once, so every Refresh builds a new one;
//   - the persisted root in Dir is used when present, the bootstrap root only
//     on first start, so restarts do not walk every root version again;
//   - the fetcher gets its own http.Client with a timeout and no retries
//     (go-tuf's retries would also retry the 404 that ends the root walk).
//
// Concurrency: a Client is not safe for concurrent use.
package tufclient

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vigil-ota/vigil/internal/release"
)

// Limits, with their units.
const (
	// DefaultHTTPTimeout bounds each metadata request.
	DefaultHTTPTimeout = 30 * time.Second
	// probeFile is a file name used to make go-tuf load a product role.
	probeFile = "_vigil-list-probe"
)

// Config says where the repository is and where trust is kept.
type Config struct {
	// MetadataURL and TargetsURL are the repository's base URLs, e.g.
	// http://host:8080/repo/metadata and …/repo/targets.
	MetadataURL string
	TargetsURL  string
	// Dir holds the trusted metadata (root.json, timestamp.json, …).
	Dir string
	// BootstrapRoot is the root to trust on first start (when Dir has no
	// root.json yet).
	BootstrapRoot []byte
	// HTTP is the client for metadata; nil means one with DefaultHTTPTimeout.
	HTTP *http.Client
	// RefTime, if set, replaces the clock expiry is checked against
	// (conformance tests).
	RefTime time.Time
}

// RepoURLs returns the metadata and targets URLs of a vigil-server.
func RepoURLs(server string) (metadataURL, targetsURL string) {
	s := strings.TrimRight(server, "/")
	return s + "/repo/metadata", s + "/repo/targets"
}

// Client is one verified view of the repository, from one Refresh.
type Client struct {
	cfg Config
	up  *updater.Updater
}

// CheckTargetNotFound is the check an unknown target path fails.
const CheckTargetNotFound = "target not found"

// Error names the check that failed.
type Error struct {
	Check string
	Err   error
}

func (e *Error) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// classify names the TUF check a go-tuf error comes from.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		expired  *metadata.ErrExpiredMetadata
		badVer   *metadata.ErrBadVersionNumber
		eqVer    *metadata.ErrEqualVersionNumber
		unsigned *metadata.ErrUnsignedMetadata
		mismatch *metadata.ErrLengthOrHashMismatch
		dlLen    *metadata.ErrDownloadLengthMismatch
		dlHTTP   *metadata.ErrDownloadHTTP
		repo     *metadata.ErrRepository
	)
	switch {
	case errors.As(err, &expired):
		return &Error{"freeze (expired metadata)", err}
	case errors.As(err, &badVer), errors.As(err, &eqVer):
		return &Error{"rollback (metadata version)", err}
	case errors.As(err, &unsigned):
		return &Error{"signature threshold", err}
	case errors.As(err, &mismatch):
		return &Error{"metadata hash or length", err}
	case errors.As(err, &dlLen):
		return &Error{"endless data (metadata length)", err}
	case errors.As(err, &dlHTTP):
		return &Error{"download", err}
	case errors.As(err, &repo):
		return &Error{"repository consistency", err}
	}
	return &Error{"metadata", err}
}

// IsVerification reports whether err is a failed security check (as
// opposed to a network problem worth retrying).
func IsVerification(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Check != "download" && e.Check != "metadata"
}

// Refresh reads the repository's newest metadata (TUF §5.3–5.5) and returns
// a verified view. The trusted root in Dir advances only over verified root
// versions.
func Refresh(cfg Config) (*Client, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.ReadFile(filepath.Join(cfg.Dir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		if len(cfg.BootstrapRoot) == 0 {
			return nil, fmt.Errorf("no trusted root in %s and no bootstrap root given", cfg.Dir)
		}
		root = cfg.BootstrapRoot
	} else if err != nil {
		return nil, err
	}
	uc, err := config.New(cfg.MetadataURL, root)
	if err != nil {
		return nil, err
	}
	uc.LocalMetadataDir = cfg.Dir
	uc.LocalTargetsDir = filepath.Join(cfg.Dir, "targets")
	uc.RemoteTargetsURL = cfg.TargetsURL
	uc.PrefixTargetsWithHash = true
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(hc)
	uc.Fetcher = f
	up, err := updater.New(uc)
	if err != nil {
		return nil, classify(err)
	}
	if !cfg.RefTime.IsZero() {
		up.UnsafeSetRefTime(cfg.RefTime)
	}
	if err := up.Refresh(); err != nil {
		return nil, classify(err)
	}
	return &Client{cfg: cfg, up: up}, nil
}

// Updater exposes go-tuf's updater (conformance client).
func (c *Client) Updater() *updater.Updater { return c.up }

// TargetInfo returns the trusted info of one target path, loading delegated
// roles as needed (TUF §5.6.7).
func (c *Client) TargetInfo(path string) (*metadata.TargetFiles, error) {
	tf, err := c.up.GetTargetInfo(path)
	if err != nil {
		if strings.Contains(err.Error(), "target") && strings.Contains(err.Error(), "not found") {
			return nil, &Error{CheckTargetNotFound, err}
		}
		return nil, classify(err)
	}
	if err := c.verifyDelegationPath(path, tf); err != nil {
		return nil, err
	}
	return tf, nil
}

// MaxDelegations bounds the roles one target lookup may visit (go-tuf's
// default is 32).
const MaxDelegations = 32

// verifyDelegationPath re-walks the delegation graph for path in TUF's
// pre-order depth-first order (§5.6.7) and checks every role on the way
// against the delegator it is reached through, then that the role that
// lists path gives the same target as go-tuf found.
//
// go-tuf v2.4.2 keeps delegated roles by name: a role first loaded under
// one delegator is reused under another without checking the second one's
// keys (the tuf-conformance "diamond" case), so a target signed with
// parent A's key could be accepted through parent B. This walk closes that.
func (c *Client) verifyDelegationPath(path string, found *metadata.TargetFiles) error {
	set := c.up.GetTrustedMetadataSet()
	type visit struct {
		name string
		md   *metadata.Metadata[metadata.TargetsType]
	}
	stack := []visit{{metadata.TARGETS, set.Targets[metadata.TARGETS]}}
	visited := map[string]bool{}
	for len(stack) > 0 && len(visited) < MaxDelegations {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v.name] {
			continue
		}
		visited[v.name] = true
		if tf, ok := v.md.Signed.Targets[path]; ok {
			if tf.Length != found.Length || !tf.Hashes.Equal(found.Hashes) {
				return &Error{"delegation", fmt.Errorf("target %s: role %s lists it differently from the role the lookup used", path, v.name)}
			}
			return nil
		}
		if v.md.Signed.Delegations == nil {
			continue
		}
		var children []visit
		for _, d := range v.md.Signed.Delegations.GetRolesForTarget(path) {
			child := set.Targets[d.Name]
			if child == nil {
				return &Error{"delegation", fmt.Errorf("target %s: role %s, delegated by %s, was never verified", path, d.Name, v.name)}
			}
			if err := v.md.VerifyDelegate(d.Name, child); err != nil {
				return &Error{"signature threshold", fmt.Errorf("target %s: role %s is not signed by the keys %s delegates it to: %w", path, d.Name, v.name, err)}
			}
			children = append(children, visit{d.Name, child})
			if d.Terminating {
				stack = stack[:0]
				break
			}
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, children[i])
		}
	}
	return &Error{"delegation", fmt.Errorf("target %s: no trusted delegation path leads to it", path)}
}

// ProductRole returns the verified metadata of a product role.
func (c *Client) ProductRole(product string) (*metadata.Metadata[metadata.TargetsType], error) {
	if err := release.ValidateProduct(product); err != nil {
		return nil, err
	}
	// go-tuf loads delegated roles only while searching for a target;
	// search for a name no release uses, then read the loaded role.
	if _, err := c.up.GetTargetInfo(release.TargetPath(product, probeFile)); err != nil && !strings.Contains(err.Error(), "not found") {
		return nil, classify(err)
	}
	set := c.up.GetTrustedMetadataSet()
	md := set.Targets[product]
	if md == nil {
		return nil, &Error{"delegation", fmt.Errorf("the repository has no product role %q", product)}
	}
	// The role must verify under the top-level delegation of that name,
	// whatever path loaded it (see verifyDelegationPath).
	if err := set.Targets[metadata.TARGETS].VerifyDelegate(product, md); err != nil {
		return nil, &Error{"signature threshold", fmt.Errorf("product role %s is not signed by the keys targets delegates it to: %w", product, err)}
	}
	return md, nil
}

// Delegation returns the top-level delegation of a product: its key ids
// and threshold (an empty one when the product is not delegated).
func (c *Client) Delegation(product string) *metadata.DelegatedRole {
	top := c.up.GetTrustedMetadataSet().Targets[metadata.TARGETS]
	if top != nil && top.Signed.Delegations != nil {
		for i := range top.Signed.Delegations.Roles {
			if top.Signed.Delegations.Roles[i].Name == product {
				return &top.Signed.Delegations.Roles[i]
			}
		}
	}
	return &metadata.DelegatedRole{Name: product} // delegates nothing
}

// Release is one signed target with its parsed release fields.
type Release struct {
	Path   string
	Target *metadata.TargetFiles
	Custom *release.Custom
}

// BadTarget is a target of a product role that is not a usable release,
// and the check it failed.
type BadTarget struct {
	Path  string
	Check string
	Err   error
}

func (b BadTarget) Error() string { return b.Path + ": " + b.Check + ": " + b.Err.Error() }

// Releases lists a product's releases, newest version first. Targets
// outside the delegation or whose custom field does not parse are skipped
// and reported in bad.
func (c *Client) Releases(product string) (list []Release, bad []BadTarget, err error) {
	md, err := c.ProductRole(product)
	if err != nil {
		return nil, nil, err
	}
	role := c.Delegation(product)
	for path, tf := range md.Signed.Targets {
		// A product key may sign only inside its delegation (TUF §5.6.7.2):
		// anything else in its role is ignored, whatever it claims.
		if ok, err := role.IsDelegatedPath(path); err != nil || !ok {
			bad = append(bad, BadTarget{path, "delegated path", fmt.Errorf("outside the paths delegated to %s", product)})
			continue
		}
		custom, err := release.Parse(tf.Custom, product)
		if err != nil {
			bad = append(bad, BadTarget{path, "release schema", err})
			continue
		}
		tf.Path = path
		list = append(list, Release{Path: path, Target: tf, Custom: custom})
	}
	sort.Slice(list, func(i, j int) bool {
		if c := release.Compare(list[i].Custom.Version, list[j].Custom.Version); c != 0 {
			return c > 0
		}
		return list[i].Path < list[j].Path
	})
	return list, bad, nil
}

// Candidate is a release considered for a device, with why it was refused.
type Candidate struct {
	Release
	Refusal *release.Refusal
}

// ConsistentTargetURL is the URL of target path with the given sha256 under
// a consistent-snapshot repository's targets URL: TARGETS/DIR/SHA256.NAME.
func ConsistentTargetURL(targetsURL, path, sha256hex string) string {
	dir, name := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		dir, name = path[:i+1], path[i+1:]
	}
	return strings.TrimRight(targetsURL, "/") + "/" + dir + sha256hex + "." + name
}

// TargetURL is where a target's bytes are fetched: consistent-snapshot
// naming, TARGETS_URL/DIR/HASH.NAME (TUF §5.7.3), with the sha256 when the
// target lists one, else the sha512.
func (c *Client) TargetURL(tf *metadata.TargetFiles) (string, error) {
	var h []byte
	for _, alg := range []string{"sha256", "sha512"} {
		if v, ok := tf.Hashes[alg]; ok {
			h = v
			break
		}
	}
	if h == nil {
		return "", &Error{"target hashes", fmt.Errorf("target %s lists no hash this client can verify (sha256, sha512)", tf.Path)}
	}
	dir, name := "", tf.Path
	if i := strings.LastIndex(tf.Path, "/"); i >= 0 {
		dir, name = tf.Path[:i+1], tf.Path[i+1:]
	}
	prefix := ""
	if root := c.up.GetTrustedMetadataSet().Root; root == nil || root.Signed.ConsistentSnapshot {
		prefix = fmt.Sprintf("%x", []byte(h)) + "."
	}
	return strings.TrimRight(c.cfg.TargetsURL, "/") + "/" + dir + prefix + name, nil
}
