// Package repotool is the release engineer's side of the TUF repository:
// it builds and signs root, targets and product metadata with offline keys
// on the machine where vigil runs, and submits the signed files to
// vigil-server. Private offline keys never leave this process.
//
// Threat model: the server is not trusted to tell the CLI what is currently
// published. Before signing a new version of a role, the CLI reads the
// current repository through the same TUF client devices use, anchored at
// the trusted root that `repo init` wrote, so a compromised server cannot
// trick a release engineer into re-signing releases they never signed.
package repotool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/internal/atomicfile"
	"github.com/vigil-ota/vigil/internal/imagefmt"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Expiries of offline roles (DESIGN.md: root 365 days, products 90 days).
const (
	RootExpiry    = 365 * 24 * time.Hour
	TargetsExpiry = 365 * 24 * time.Hour
	ProductExpiry = 90 * 24 * time.Hour
	// DefaultRootThreshold is used when the flag is not given.
	DefaultRootThreshold = 2
	// TrustedRootFile is where `repo init` writes the root to trust, in the
	// keys directory.
	TrustedRootFile = "trusted-root.json"
)

// Signer is an offline key ready to sign.
type Signer struct {
	Path   string
	Signer signature.Signer
	Key    *metadata.Key
	ID     string
}

// LoadSigner loads a private key file.
func LoadSigner(path string) (*Signer, error) {
	s, err := keyfile.Signer(path)
	if err != nil {
		return nil, err
	}
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, err
	}
	id, err := k.ID()
	if err != nil {
		return nil, err
	}
	return &Signer{Path: path, Signer: s, Key: k, ID: id}, nil
}

// LoadPublic loads a public key file as a TUF key.
func LoadPublic(path string) (*metadata.Key, string, error) {
	pub, err := keyfile.ReadPublic(path)
	if err != nil {
		return nil, "", err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	return k, id, err
}

// LoadSigners loads several private key files.
func LoadSigners(paths []string) ([]*Signer, error) {
	var out []*Signer
	for _, p := range paths {
		s, err := LoadSigner(p)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// nextVersion moves a role's version on by one, refusing to overflow (the
// server refuses jumps, so only a repository damaged some other way gets
// near the limit).
func nextVersion(v *int64) error {
	if *v >= math.MaxInt64 || *v < 0 {
		return fmt.Errorf("the role is at version %d, which cannot be moved on; the repository needs a new root of trust", *v)
	}
	*v++
	return nil
}

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func sign[T metadata.Roles](md *metadata.Metadata[T], signers []*Signer) ([]byte, error) {
	md.ClearSignatures()
	for _, s := range signers {
		if _, err := md.Sign(s.Signer); err != nil {
			return nil, fmt.Errorf("sign with %s: %w", s.Path, err)
		}
	}
	return md.ToBytes(true)
}

// Session is a connection to one server with a verified view of its
// repository.
type Session struct {
	API         *client.Client
	Server      string
	TrustedRoot string // file
	TUFDir      string
	// DryRun builds and signs everything but submits and uploads nothing;
	// the response lists the versions that would be published.
	DryRun bool
}

// submit sends req, or with DryRun reports what it would publish.
func (s *Session) submit(ctx context.Context, req api.SubmitRequest) (*api.SubmitResponse, error) {
	if !s.DryRun {
		resp, err := s.API.Submit(ctx, req)
		var ae *api.Error
		if err != nil && !errors.As(err, &ae) {
			// No answer: the server went away before or while publishing.
			// A publish is one transaction: either all of it is there or
			// nothing; running the same command again is safe (a release
			// that did make it is reported as already published).
			return nil, fmt.Errorf("%w\nthe server did not confirm the publish: nothing was published unless it says so when you run the same command again, which is safe", err)
		}
		return resp, err
	}
	versions := map[string]int64{}
	if req.Root != nil {
		md, err := metadata.Root().FromBytes(req.Root)
		if err != nil {
			return nil, err
		}
		versions[metadata.ROOT] = md.Signed.Version
	}
	if req.Targets != nil {
		md, err := metadata.Targets().FromBytes(req.Targets)
		if err != nil {
			return nil, err
		}
		versions[metadata.TARGETS] = md.Signed.Version
	}
	for p, b := range req.Products {
		md, err := metadata.Targets().FromBytes(b)
		if err != nil {
			return nil, err
		}
		versions[p] = md.Signed.Version
	}
	return &api.SubmitResponse{Versions: versions}, nil
}

// Refresh reads the repository through TUF.
func (s *Session) Refresh() (*tufclient.Client, error) {
	root, err := os.ReadFile(s.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w (written by `vigil repo init`; pass --trusted-root)", err)
	}
	mu, tu := tufclient.RepoURLs(s.Server)
	tc, err := tufclient.Refresh(tufclient.Config{MetadataURL: mu, TargetsURL: tu, Dir: s.TUFDir, BootstrapRoot: root})
	if err != nil && tufclient.IsVerification(err) {
		if other := s.foreignRoot(root); other != "" {
			return nil, fmt.Errorf("%s is not this repository's trusted root: %s (another server, or a file from another repository's `vigil repo init`): %w", s.TrustedRoot, other, err)
		}
	}
	return tc, err
}

// foreignRoot compares the trusted root with the server's first root: a
// repository's root v1 never changes, so a different one means another
// repository. It returns what differs ("" when they match or the server
// cannot be asked).
func (s *Session) foreignRoot(trusted []byte) string {
	mine, err := metadata.Root().FromBytes(trusted)
	if err != nil {
		return ""
	}
	mu, _ := tufclient.RepoURLs(s.Server)
	resp, err := http.Get(mu + "/1.root.json")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	theirs, err := metadata.Root().FromBytes(b)
	if err != nil {
		return ""
	}
	if mine.Signed.Version == 1 && !slices.Equal(mine.Signed.Roles[metadata.ROOT].KeyIDs, theirs.Signed.Roles[metadata.ROOT].KeyIDs) {
		return "its root keys are not the ones the server's repository started with"
	}
	return ""
}

// InitOptions are the inputs of repository initialisation.
type InitOptions struct {
	RootKeys      []*Signer
	RootThreshold int
	TargetsKey    *Signer
	SnapshotPub   string
	TimestampPub  string
	// Online, when set, are the online keys (role → key) taken from the
	// server instead of SnapshotPub and TimestampPub.
	Online map[string]*metadata.Key
	// TrustedRootOut is where the new root is written for devices and
	// for later CLI calls.
	TrustedRootOut string
}

// Init builds root v1 and targets v1, signs them, and submits them.
func (s *Session) Init(ctx context.Context, o InitOptions) (*api.SubmitResponse, error) {
	if o.RootThreshold < 1 || o.RootThreshold > len(o.RootKeys) {
		return nil, fmt.Errorf("root threshold %d needs between 1 and %d root keys", o.RootThreshold, len(o.RootKeys))
	}
	root := metadata.Root(now().Add(RootExpiry))
	for _, k := range o.RootKeys {
		if err := root.Signed.AddKey(k.Key, metadata.ROOT); err != nil {
			return nil, err
		}
	}
	root.Signed.Roles[metadata.ROOT].Threshold = o.RootThreshold
	if err := root.Signed.AddKey(o.TargetsKey.Key, metadata.TARGETS); err != nil {
		return nil, err
	}
	for role, path := range map[string]string{metadata.SNAPSHOT: o.SnapshotPub, metadata.TIMESTAMP: o.TimestampPub} {
		k := o.Online[role]
		if k == nil {
			var err error
			if k, _, err = LoadPublic(path); err != nil {
				return nil, err
			}
		}
		if err := root.Signed.AddKey(k, role); err != nil {
			return nil, err
		}
	}
	rootBytes, err := sign(root, o.RootKeys)
	if err != nil {
		return nil, err
	}
	targets := metadata.Targets(now().Add(TargetsExpiry))
	targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{}}
	targetsBytes, err := sign(targets, []*Signer{o.TargetsKey})
	if err != nil {
		return nil, err
	}
	resp, err := s.submit(ctx, api.SubmitRequest{Root: rootBytes, Targets: targetsBytes})
	if err != nil || s.DryRun {
		return resp, err
	}
	if err := writeFile(o.TrustedRootOut, rootBytes); err != nil {
		return resp, fmt.Errorf("the repository is initialised, but writing the trusted root failed: %w", err)
	}
	return resp, nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

// copyTargets deep-copies verified metadata so it can be edited and re-signed.
func copyTargets(md *metadata.Metadata[metadata.TargetsType]) (*metadata.Metadata[metadata.TargetsType], error) {
	b, err := md.ToBytes(false)
	if err != nil {
		return nil, err
	}
	return metadata.Targets().FromBytes(b)
}

// AddProduct delegates paths PRODUCT/* to a new product role with the
// given keys and threshold, signed by the targets key, and publishes the
// empty product role signed by the product keys.
func (s *Session) AddProduct(ctx context.Context, product string, targetsKey *Signer, productKeys []*Signer, threshold int) (*api.SubmitResponse, error) {
	if err := release.ValidateProduct(product); err != nil {
		return nil, err
	}
	if threshold < 1 || threshold > len(productKeys) {
		return nil, fmt.Errorf("threshold %d needs between 1 and %d product keys", threshold, len(productKeys))
	}
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	cur := tc.Updater().GetTrustedMetadataSet().Targets[metadata.TARGETS]
	t, err := copyTargets(cur)
	if err != nil {
		return nil, err
	}
	if t.Signed.Delegations == nil {
		t.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	for _, r := range t.Signed.Delegations.Roles {
		if r.Name == product {
			return nil, fmt.Errorf("product %q already exists (use `vigil repo rotate product` to change its keys)", product)
		}
	}
	role := metadata.DelegatedRole{Name: product, Threshold: threshold, Terminating: true, Paths: []string{product + "/*"}, KeyIDs: []string{}}
	t.Signed.Delegations.Roles = append(t.Signed.Delegations.Roles, role)
	for _, k := range productKeys {
		if err := t.Signed.AddKey(k.Key, product); err != nil {
			return nil, err
		}
	}
	if err := nextVersion(&t.Signed.Version); err != nil {
		return nil, err
	}
	t.Signed.Expires = now().Add(TargetsExpiry)
	targetsBytes, err := sign(t, []*Signer{targetsKey})
	if err != nil {
		return nil, err
	}
	p := metadata.Targets(now().Add(ProductExpiry))
	productBytes, err := sign(p, productKeys)
	if err != nil {
		return nil, err
	}
	return s.submit(ctx, api.SubmitRequest{Targets: targetsBytes, Products: map[string]json.RawMessage{product: productBytes}})
}

// PublishOptions describe one release.
type PublishOptions struct {
	Product  string
	File     string // image on disk
	Name     string // target file name; default PRODUCT-VERSION.img
	Custom   release.Custom
	Keys     []*Signer
	Progress io.Writer
	// SBOM is the release's CycloneDX JSON SBOM file ("" = none): checked
	// here, published as a target beside the image and named by the
	// image's custom.sbom and custom.sbom_sha256.
	SBOM string
	// Accept lists KEV-listed vulnerabilities the SBOM still carries that
	// the release engineer accepts (the server refuses them otherwise).
	Accept []api.AcceptedVulnerability
	// Incident names the incident the release answers (a fix, a signed
	// recall); Reason says why. Both go to the audit log and the
	// incident's timeline.
	Incident, Reason string
	// DeltaFrom lists published versions to make deltas from; with
	// DeltaFromLast, the newest that many full releases older than this
	// one are added (delta.go).
	DeltaFrom     []string
	DeltaFromLast int
}

// PublishResult reports a publish.
type PublishResult struct {
	Target   string           `json:"target"`
	SHA256   string           `json:"sha256"`
	Length   int64            `json:"length"`
	Uploaded bool             `json:"uploaded"`
	Versions map[string]int64 `json:"versions"`
	// SBOM is the published SBOM target ("" = none).
	SBOM string `json:"sbom,omitempty"`
	// Warnings are things the release engineer should know (published
	// nevertheless).
	Warnings []string `json:"warnings,omitempty"`
	// Deltas are the published deltas, one per base.
	Deltas []DeltaResult `json:"deltas,omitempty"`
}

// HashFile streams a file through SHA-256.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// DefaultName is the target file name of a release when none is given.
func DefaultName(product, version, file string) string {
	ext := filepath.Ext(file)
	for _, double := range []string{".tar.gz", ".tar.zst", ".tar.xz", ".tar.bz2"} {
		if strings.HasSuffix(file, double) {
			ext = double
		}
	}
	if ext == "" || release.ValidateFileName("x"+ext) != nil {
		ext = ".img"
	}
	return product + "-" + version + ext
}

// MaxPublishAttempts bounds retries when concurrent publishes to the same
// product move its role on between our read and our submit.
const MaxPublishAttempts = 10

// publishRetryDelay is the base of the jittered wait between attempts.
const publishRetryDelay = 200 * time.Millisecond

// Publish uploads the image (streamed), adds it to the next version of the
// product role with its signed release fields, signs with the product keys
// and submits the role. If another publish to the same product wins the
// race, it re-reads the role and signs again, so neither release is lost.
func (s *Session) Publish(ctx context.Context, o PublishOptions) (*PublishResult, error) {
	var res *PublishResult
	var err error
	for attempt := 1; attempt <= MaxPublishAttempts; attempt++ {
		res, err = s.publishOnce(ctx, o)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeVersionConflict {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(publishRetryDelay + time.Duration(mrand.Int64N(int64(publishRetryDelay)*int64(attempt)))):
		}
	}
	return nil, fmt.Errorf("gave up after %d attempts: %w", MaxPublishAttempts, err)
}

func (s *Session) publishOnce(ctx context.Context, o PublishOptions) (*PublishResult, error) {
	path, err := o.targetPath()
	if err != nil {
		return nil, err
	}
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	cur, err := tc.ProductRole(o.Product)
	if err != nil {
		return nil, err
	}
	if err := checkUnpublished(cur, o, path); err != nil {
		return nil, err
	}
	if err := checkDelegatedKeys(tc, o.Product, o.Keys); err != nil {
		return nil, err // caught here, before the image is uploaded
	}
	var doc *sbomFile
	if o.SBOM != "" {
		if doc, err = readSBOMFile(o.SBOM, o.Product, o.Custom.Version); err != nil {
			return nil, err
		}
		o.Custom.SBOM, o.Custom.SBOMSHA256 = doc.path, doc.img.sha256
	}
	img, err := measure(o.File)
	if err != nil {
		return nil, err
	}
	if o.Custom.UnpackedLength == 0 {
		o.Custom.UnpackedLength = img.unpacked
	}
	deltas, err := s.makeDeltas(ctx, cur, o, img)
	if err != nil {
		return nil, err
	}
	defer deltas.cleanup()
	uploaded, err := s.uploadRelease(ctx, o, img, doc)
	if err != nil {
		return nil, err
	}
	adds := []newTarget{{path: path, custom: o.Custom, img: img}}
	if doc != nil {
		adds = append(adds, doc.target(o.Product, o.Custom.Version))
	}
	for _, d := range deltas.targets {
		if !s.DryRun {
			if _, err := s.upload(ctx, o.Product, d.name, d.img); err != nil {
				return nil, err
			}
		}
		adds = append(adds, d.newTarget)
	}
	pb, err := signWithTargets(cur, o.Keys, adds)
	if err != nil {
		return nil, err
	}
	resp, err := s.submit(ctx, api.SubmitRequest{Products: map[string]json.RawMessage{o.Product: pb}, Accept: o.Accept, Incident: o.Incident, Reason: o.Reason})
	if err != nil {
		return nil, err
	}
	res := &PublishResult{Target: path, SHA256: img.sha256, Length: img.length, Uploaded: uploaded, Versions: resp.Versions,
		Warnings: append(lowerVersionWarning(cur, o), deltas.warnings...), Deltas: deltas.results}
	if doc != nil {
		res.SBOM = doc.path
	}
	return res, nil
}

// targetPath validates the release fields and returns the target path.
func (o *PublishOptions) targetPath() (string, error) {
	if err := o.Custom.Validate(o.Product); err != nil {
		return "", err
	}
	if o.Name == "" {
		o.Name = DefaultName(o.Product, o.Custom.Version, o.File)
	}
	if err := release.ValidateFileName(o.Name); err != nil {
		return "", err
	}
	return release.TargetPath(o.Product, o.Name), nil
}

// checkUnpublished refuses a path or a version that is published already:
// releases are immutable.
func checkUnpublished(cur *metadata.Metadata[metadata.TargetsType], o PublishOptions, path string) error {
	if _, exists := cur.Signed.Targets[path]; exists {
		return fmt.Errorf("target %s is already published; releases are immutable", path)
	}
	for p, tf := range cur.Signed.Targets {
		if c, err := release.Parse(tf.Custom, o.Product); err == nil && c.Version == o.Custom.Version && c.Kind == o.Custom.Kind && c.DeltaBaseSHA256 == o.Custom.DeltaBaseSHA256 {
			return fmt.Errorf("version %s of %s is already published as %s", o.Custom.Version, o.Product, p)
		}
	}
	return nil
}

// lowerVersionWarning warns when a release is older than the newest one
// published: devices on newer versions never install it, unless it is a
// signed recall naming their version.
func lowerVersionWarning(cur *metadata.Metadata[metadata.TargetsType], o PublishOptions) []string {
	newest := ""
	for _, tf := range cur.Signed.Targets {
		if c, err := release.Parse(tf.Custom, o.Product); err == nil && c.Kind == release.KindFull && (newest == "" || release.Compare(c.Version, newest) > 0) {
			newest = c.Version
		}
	}
	if newest == "" || release.Compare(o.Custom.Version, newest) >= 0 {
		return nil
	}
	if len(o.Custom.DowngradeFrom) > 0 {
		return []string{fmt.Sprintf("%s is older than the newest release %s: a signed recall, installed only by devices running %s", o.Custom.Version, newest, strings.Join(o.Custom.DowngradeFrom, ", "))}
	}
	return []string{fmt.Sprintf("%s is older than the newest release %s: devices on %s or newer will never install it (to move them back, publish a signed recall with --downgrade-from)", o.Custom.Version, newest, newest)}
}

// checkDelegatedKeys refuses keys that cannot sign the product role: at
// least the delegation's threshold of them must be the product's keys.
func checkDelegatedKeys(tc *tufclient.Client, product string, keys []*Signer) error {
	role := tc.Delegation(product)
	good := 0
	for _, k := range keys {
		if slices.Contains(role.KeyIDs, k.ID) {
			good++
		} else {
			return &KeyError{Path: k.Path, KeyID: k.ID, Product: product, Delegated: role.KeyIDs}
		}
	}
	if good < role.Threshold {
		return fmt.Errorf("product %s needs %d signatures; %d of the given keys are its keys", product, role.Threshold, good)
	}
	return nil
}

// KeyError is a key that is not one of a product's delegated keys.
type KeyError struct {
	Path, KeyID, Product string
	Delegated            []string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("key %s (key id %s) is not a key of product %s, which the repository delegates to key id(s) %s; nothing was uploaded",
		e.Path, e.KeyID, e.Product, strings.Join(e.Delegated, ", "))
}

// image is what publishing needs to know of the file.
type image struct {
	path     string
	sha256   string
	length   int64
	unpacked int64 // for tar images; 0 otherwise
}

// measure hashes the image and, for an archive, measures what it unpacks
// to, which is signed so devices can refuse a decompression bomb.
func measure(path string) (image, error) {
	sum, length, err := HashFile(path)
	if err != nil {
		return image{}, err
	}
	img := image{path: path, sha256: sum, length: length}
	format, unpacked, err := imagefmt.UnpackedLength(path)
	if err != nil {
		return image{}, fmt.Errorf("%s: %w", path, err)
	}
	if format.IsTar() {
		img.unpacked = unpacked
	}
	return img, nil
}

func (s *Session) upload(ctx context.Context, product, name string, img image) (bool, error) {
	f, err := os.Open(img.path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	uploaded, err := s.API.Upload(ctx, product, name, img.sha256, img.length, f)
	if err != nil {
		return false, fmt.Errorf("upload %s: %w", name, err)
	}
	return uploaded, nil
}

// uploadRelease uploads the image and its SBOM (nothing in a dry run);
// it reports whether the image was stored anew.
func (s *Session) uploadRelease(ctx context.Context, o PublishOptions, img image, doc *sbomFile) (bool, error) {
	if s.DryRun {
		return false, nil
	}
	uploaded, err := s.upload(ctx, o.Product, o.Name, img)
	if err != nil || doc == nil {
		return uploaded, err
	}
	_, err = s.upload(ctx, o.Product, doc.name, doc.img)
	return uploaded, err
}

// newTarget is a target to add to the product role.
type newTarget struct {
	path   string
	custom release.Custom
	img    image
}

// signWithTargets signs the next version of the product role with the new
// targets added.
func signWithTargets(cur *metadata.Metadata[metadata.TargetsType], keys []*Signer, adds []newTarget) ([]byte, error) {
	p, err := copyTargets(cur)
	if err != nil {
		return nil, err
	}
	for _, t := range adds {
		custom, err := json.Marshal(t.custom)
		if err != nil {
			return nil, err
		}
		raw := json.RawMessage(custom)
		h, _ := hex.DecodeString(t.img.sha256)
		p.Signed.Targets[t.path] = &metadata.TargetFiles{Length: t.img.length, Hashes: metadata.Hashes{"sha256": h}, Custom: &raw, Path: t.path}
	}
	if err := nextVersion(&p.Signed.Version); err != nil {
		return nil, err
	}
	p.Signed.Expires = now().Add(ProductExpiry)
	return sign(p, keys)
}

// ReleaseInfo is one release as `release list` and `release show` print it.
type ReleaseInfo struct {
	Product string          `json:"product"`
	Version string          `json:"version"`
	Target  string          `json:"target"`
	SHA256  string          `json:"sha256"`
	Length  int64           `json:"length"`
	Custom  *release.Custom `json:"custom"`
	// SBOM is the release's SBOM target ("" when it has none).
	SBOM string `json:"sbom"`
	// Deltas are the release's delta targets, one per base image.
	Deltas []string `json:"deltas,omitempty"`
}

// Releases lists the verified releases of products (all when empty).
func (s *Session) Releases(products []string) ([]ReleaseInfo, error) {
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	if len(products) == 0 {
		top := tc.Updater().GetTrustedMetadataSet().Targets[metadata.TARGETS]
		if top.Signed.Delegations != nil {
			for _, r := range top.Signed.Delegations.Roles {
				products = append(products, r.Name)
			}
		}
		sort.Strings(products)
	}
	var out []ReleaseInfo
	for _, p := range products {
		list, _, err := tc.Releases(p)
		if err != nil {
			return nil, err
		}
		sboms, deltas := map[string]string{}, map[string][]string{}
		for _, r := range list {
			switch r.Custom.Kind {
			case release.KindSBOM:
				sboms[r.Custom.Version] = r.Path
			case release.KindDelta:
				deltas[r.Custom.Version] = append(deltas[r.Custom.Version], r.Path)
			}
		}
		for _, r := range list {
			if r.Custom.Kind != release.KindFull {
				continue
			}
			out = append(out, ReleaseInfo{Product: p, Version: r.Custom.Version, Target: r.Path,
				SHA256: hex.EncodeToString(r.Target.Hashes["sha256"]), Length: r.Target.Length, Custom: r.Custom, SBOM: sboms[r.Custom.Version],
				Deltas: deltas[r.Custom.Version]})
		}
	}
	return out, nil
}

// ProductKeyFiles returns the default key file of a product in a keys dir.
func ProductKeyFiles(keysDir, product string) []string {
	return []string{filepath.Join(keysDir, "product-"+product+keyfile.PrivateSuffix)}
}

// RootKeyFiles returns the root-*.key files of a keys dir.
func RootKeyFiles(keysDir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(keysDir, "root-*"+keyfile.PrivateSuffix))
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no root-*.key files in %s", keysDir)
	}
	sort.Strings(m)
	return m, nil
}

// SplitList splits a comma-separated flag value, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// RotateRoot publishes root version N+1 with new root keys and threshold,
// signed by a threshold of the old root keys and of the new ones (TUF
// §5.3.4), and updates the trusted root file. Devices holding any older root
// walk to the new one.
func (s *Session) RotateRoot(ctx context.Context, oldKeys, newKeys []*Signer, threshold int) (*api.SubmitResponse, error) {
	if threshold < 1 || threshold > len(newKeys) {
		return nil, fmt.Errorf("threshold %d needs between 1 and %d new root keys", threshold, len(newKeys))
	}
	signers := append(append([]*Signer{}, oldKeys...), newKeys...)
	seen := map[string]bool{}
	var unique []*Signer
	for _, k := range signers {
		if !seen[k.ID] {
			seen[k.ID] = true
			unique = append(unique, k)
		}
	}
	return s.publishRoot(ctx, unique, api.SubmitRequest{}, func(next *metadata.Metadata[metadata.RootType]) error {
		for _, id := range next.Signed.Roles[metadata.ROOT].KeyIDs {
			if err := next.Signed.RevokeKey(id, metadata.ROOT); err != nil {
				return err
			}
		}
		for _, k := range newKeys {
			if err := next.Signed.AddKey(k.Key, metadata.ROOT); err != nil {
				return err
			}
		}
		next.Signed.Roles[metadata.ROOT].Threshold = threshold
		return nil
	})
}

// publishRoot publishes root version N+1: the trusted root changed by
// change, with a new expiry, signed by signers and submitted with req's
// reason and incident; then it updates the trusted root file.
func (s *Session) publishRoot(ctx context.Context, signers []*Signer, req api.SubmitRequest, change func(*metadata.Metadata[metadata.RootType]) error) (*api.SubmitResponse, error) {
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	b, err := tc.Updater().GetTrustedMetadataSet().Root.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	if err := change(next); err != nil {
		return nil, err
	}
	if err := nextVersion(&next.Signed.Version); err != nil {
		return nil, err
	}
	next.Signed.Expires = now().Add(RootExpiry)
	if req.Root, err = sign(next, signers); err != nil {
		return nil, err
	}
	resp, err := s.submit(ctx, req)
	if err != nil || s.DryRun {
		return resp, err
	}
	return resp, writeFile(s.TrustedRoot, req.Root)
}

// redelegate moves product's delegation in t to newKeys and threshold.
func redelegate(t *metadata.Metadata[metadata.TargetsType], product string, newKeys []*Signer, threshold int) error {
	var role *metadata.DelegatedRole
	for i := range t.Signed.Delegations.Roles {
		if t.Signed.Delegations.Roles[i].Name == product {
			role = &t.Signed.Delegations.Roles[i]
		}
	}
	if role == nil {
		return fmt.Errorf("product %q is not delegated", product)
	}
	for _, id := range append([]string{}, role.KeyIDs...) {
		if err := t.Signed.RevokeKey(id, product); err != nil {
			return err
		}
	}
	for _, k := range newKeys {
		if err := t.Signed.AddKey(k.Key, product); err != nil {
			return err
		}
	}
	for i := range t.Signed.Delegations.Roles {
		if t.Signed.Delegations.Roles[i].Name == product {
			t.Signed.Delegations.Roles[i].Threshold = threshold
		}
	}
	return nil
}

// RotateProduct replaces a product's keys: the targets key signs the new
// delegation, the new product keys re-sign the product role.
func (s *Session) RotateProduct(ctx context.Context, product string, targetsKey *Signer, newKeys []*Signer, threshold int) (*api.SubmitResponse, error) {
	if threshold < 1 || threshold > len(newKeys) {
		return nil, fmt.Errorf("threshold %d needs between 1 and %d product keys", threshold, len(newKeys))
	}
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	cur, err := tc.ProductRole(product)
	if err != nil {
		return nil, err
	}
	t, err := copyTargets(tc.Updater().GetTrustedMetadataSet().Targets[metadata.TARGETS])
	if err != nil {
		return nil, err
	}
	if err := redelegate(t, product, newKeys, threshold); err != nil {
		return nil, err
	}
	if err := nextVersion(&t.Signed.Version); err != nil {
		return nil, err
	}
	t.Signed.Expires = now().Add(TargetsExpiry)
	tb, err := sign(t, []*Signer{targetsKey})
	if err != nil {
		return nil, err
	}
	p, err := copyTargets(cur)
	if err != nil {
		return nil, err
	}
	if err := nextVersion(&p.Signed.Version); err != nil {
		return nil, err
	}
	p.Signed.Expires = now().Add(ProductExpiry)
	pb, err := sign(p, newKeys)
	if err != nil {
		return nil, err
	}
	return s.submit(ctx, api.SubmitRequest{Targets: tb, Products: map[string]json.RawMessage{product: pb}})
}

// RevokeResult is what a revoke removed.
type RevokeResult struct {
	Release  string           `json:"release"`
	Removed  []string         `json:"removed_targets"`
	Versions map[string]int64 `json:"versions"`
}

// Revoke re-signs the next version of the product role without the
// release's targets (its image and SBOM) and submits it with reason and
// incident: devices stop seeing the release at their next metadata
// refresh, and one that staged it refuses to switch to it (docs/agent.md).
func (s *Session) Revoke(ctx context.Context, product, version string, keys []*Signer, reason, incident string) (*RevokeResult, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("a revoke needs a reason (it is audited and shown on the incident's timeline)")
	}
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	cur, err := tc.ProductRole(product)
	if err != nil {
		return nil, err
	}
	if err := checkDelegatedKeys(tc, product, keys); err != nil {
		return nil, err
	}
	p, err := copyTargets(cur)
	if err != nil {
		return nil, err
	}
	res := &RevokeResult{Release: product + "@" + version}
	for path, tf := range p.Signed.Targets {
		c, err := release.Parse(tf.Custom, product)
		if err == nil && c.Version == version {
			delete(p.Signed.Targets, path)
			res.Removed = append(res.Removed, path)
		}
	}
	if len(res.Removed) == 0 {
		return nil, fmt.Errorf("%s@%s is not in the signed %s role (already revoked, or never published)", product, version, product)
	}
	sort.Strings(res.Removed)
	if err := nextVersion(&p.Signed.Version); err != nil {
		return nil, err
	}
	p.Signed.Expires = now().Add(ProductExpiry)
	pb, err := sign(p, keys)
	if err != nil {
		return nil, err
	}
	resp, err := s.submit(ctx, api.SubmitRequest{Products: map[string]json.RawMessage{product: pb}, Reason: reason, Incident: incident, Revoke: []string{res.Release}})
	if err != nil {
		return nil, err
	}
	res.Versions = resp.Versions
	return res, nil
}

// RotateOnline publishes root version N+1 that delegates snapshot and
// timestamp to the server's next online keys (snapshot_key_next,
// timestamp_key_next), signed by a threshold of the root keys, and
// updates the trusted root file. The server signs with the keys the root
// in effect names, so the switch happens with this publish; devices
// follow through the ordinary root walk. Use it when an online key may be
// compromised, or on schedule.
func (s *Session) RotateOnline(ctx context.Context, rootKeys []*Signer, reason, incident string) (*api.SubmitResponse, error) {
	keys, err := s.API.OnlineKeys(ctx)
	if err != nil {
		return nil, err
	}
	if keys.NextSnapshotID == "" || keys.NextTimestampID == "" {
		return nil, fmt.Errorf("the server has no next online keys: generate them (vigil keys generate snapshot-2 timestamp-2 --dir …), set snapshot_key_next and timestamp_key_next, restart the server, then run this again")
	}
	return s.publishRoot(ctx, rootKeys, api.SubmitRequest{Reason: reason, Incident: incident}, func(next *metadata.Metadata[metadata.RootType]) error {
		for role, raw := range map[string]json.RawMessage{metadata.SNAPSHOT: keys.NextSnapshot, metadata.TIMESTAMP: keys.NextTimestamp} {
			var k metadata.Key
			if err := json.Unmarshal(raw, &k); err != nil {
				return fmt.Errorf("the server's next %s key: %w", role, err)
			}
			for _, id := range append([]string{}, next.Signed.Roles[role].KeyIDs...) {
				if err := next.Signed.RevokeKey(id, role); err != nil {
					return err
				}
			}
			if err := next.Signed.AddKey(&k, role); err != nil {
				return err
			}
			next.Signed.Roles[role].Threshold = 1
		}
		return nil
	})
}

// ServerOnlineKeys fetches the server's online keys for a new root and
// checks their ids against what the operator expects (read out of band,
// e.g. from the server's start-up log): a server that lies about its keys
// would otherwise get its own keys into the root. Without expectations it
// refuses, naming the ids to check.
func (s *Session) ServerOnlineKeys(ctx context.Context, expect []string) (map[string]*metadata.Key, error) {
	ok, err := s.API.OnlineKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]*metadata.Key{}
	var ids []string
	for role, raw := range map[string]json.RawMessage{metadata.SNAPSHOT: ok.Snapshot, metadata.TIMESTAMP: ok.Timestamp} {
		var k metadata.Key
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("the server's %s key: %w", role, err)
		}
		id, err := k.ID()
		if err != nil {
			return nil, err
		}
		out[role] = &k
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(expect) == 0 {
		return nil, &UsageError{Msg: fmt.Sprintf("the server says its online keys are snapshot %s and timestamp %s: check them against its start-up log "+
			"(the \"online keys\" line) and run again with --expect-online-keyid %s --expect-online-keyid %s", ok.SnapshotID, ok.TimestampID, ok.SnapshotID, ok.TimestampID)}
	}
	for _, id := range ids {
		if !slices.Contains(expect, id) {
			return nil, &VerificationError{Msg: fmt.Sprintf("the server's online key %s is not one you expect (%s): do not initialise against this server", id, strings.Join(expect, ", "))}
		}
	}
	return out, nil
}

// UsageError is input the user must give (exit 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// VerificationError is a check that failed for security (exit 3).
type VerificationError struct{ Msg string }

func (e *VerificationError) Error() string { return e.Msg }
