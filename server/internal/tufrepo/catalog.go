package tufrepo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
)

// SBOMGate is vigilance's check of a new release's SBOM before it is
// published: a release that carries a KEV-listed vulnerability is refused
// unless the submission accepts it by id with a reason. accept may name
// only vulnerabilities the release carries.
type SBOMGate interface {
	CheckNewRelease(ctx context.Context, product, version string, s *sbom.SBOM, accept []api.AcceptedVulnerability) error
}

// SetRevoked installs the revoked hook (set once, before the repository
// serves; the fleet is built after the repository).
func (r *Repo) SetRevoked(fn func(ctx context.Context, removed []release.Published, reason string)) {
	r.o.Revoked = fn
}

// SetVigilance installs the SBOM gate and the published hook (set once,
// before the repository serves: vigilance reads the repository, so it is
// built after it).
func (r *Repo) SetVigilance(gate SBOMGate, published func(ctx context.Context, products []string)) {
	r.o.SBOMGate, r.o.Published = gate, published
}

// Releases lists the published targets of every product role at its
// current version, ordered by product and target path.
func (r *Repo) Releases(ctx context.Context) ([]release.Published, error) {
	versions, err := r.st.RoleVersions(ctx)
	if err != nil {
		return nil, err
	}
	var out []release.Published
	for _, v := range versions {
		if isTopLevel(v.Role) {
			continue
		}
		md, err := r.loadTargets(ctx, v.Role, v.Version)
		if err != nil {
			return nil, err
		}
		out = append(out, publishedOf(v.Role, md)...)
	}
	return out, nil
}

func publishedOf(product string, md *metadata.Metadata[metadata.TargetsType]) []release.Published {
	var out []release.Published
	for _, path := range sortedPaths(md.Signed.Targets) {
		tf := md.Signed.Targets[path]
		c, err := release.Parse(tf.Custom, product)
		if err != nil {
			continue // verified at publish; a schema change must not hide the rest
		}
		out = append(out, release.Published{Product: product, Target: path, SHA256: hexOf(tf.Hashes["sha256"]), Length: tf.Length, Custom: c})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// OpenTarget opens a published target's stored bytes.
func (r *Repo) OpenTarget(ctx context.Context, p release.Published) (io.ReadCloser, error) {
	_, file, err := release.SplitTargetPath(p.Target)
	if err != nil {
		return nil, err
	}
	rc, _, err := r.blobs.Get(ctx, TargetKey(p.Product, p.SHA256, file), nil)
	return rc, err
}

// readSBOM reads and parses an uploaded SBOM target (bounded by
// sbom.MaxBytes) and checks that it describes the release.
func (r *Repo) readSBOM(ctx context.Context, product, path string, tf *metadata.TargetFiles, c *release.Custom) (*sbom.SBOM, error) {
	if tf.Length > sbom.MaxBytes {
		return nil, refuse("sbom", "target %q: the SBOM is %d bytes, over the limit of %d", path, tf.Length, sbom.MaxBytes)
	}
	_, file, _ := release.SplitTargetPath(path)
	b, err := r.readBlob(ctx, TargetKey(product, hexOf(tf.Hashes["sha256"]), file))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, refuse("target upload", "target %q: no uploaded SBOM with sha256 %s; upload it first", path, hexOf(tf.Hashes["sha256"]))
	}
	if err != nil {
		return nil, err
	}
	s, err := sbom.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, apperr.New(apperr.Invalid, "target %q: %v", path, err)
	}
	if err := s.Describes(product, c.Version); err != nil {
		return nil, apperr.New(apperr.Invalid, "target %q: %v", path, err)
	}
	return s, nil
}

// checkSBOMLinks checks the new targets' SBOM links: an image naming an
// SBOM (custom.sbom) names an SBOM target of the same role and version
// with the signed sha256; a new SBOM is parsed and, for a new image,
// passed through the gate.
func (r *Repo) checkSBOMLinks(ctx context.Context, product string, md *metadata.Metadata[metadata.TargetsType], fresh map[string]*release.Custom, accept []api.AcceptedVulnerability) error {
	newImages := map[string]bool{}
	for path, c := range fresh {
		if c.Kind != release.KindSBOM {
			newImages[c.Version] = true
		}
		if c.SBOM == "" {
			continue
		}
		tf, ok := md.Signed.Targets[c.SBOM]
		if !ok {
			return refuse("sbom", "target %q names SBOM %q, which the role does not publish", path, c.SBOM)
		}
		sc, err := release.Parse(tf.Custom, product)
		if err != nil || sc.Kind != release.KindSBOM || sc.Version != c.Version {
			return refuse("sbom", "target %q names SBOM %q, which is not the SBOM of version %s", path, c.SBOM, c.Version)
		}
		if hexOf(tf.Hashes["sha256"]) != c.SBOMSHA256 {
			return refuse("sbom", "target %q: custom.sbom_sha256 %s is not the sha256 of %q", path, c.SBOMSHA256, c.SBOM)
		}
	}
	used := false
	for _, path := range sortedCustoms(fresh) {
		c := fresh[path]
		if c.Kind != release.KindSBOM {
			continue
		}
		s, err := r.readSBOM(ctx, product, path, md.Signed.Targets[path], c)
		if err != nil {
			return err
		}
		if r.o.SBOMGate != nil && newImages[c.Version] {
			used = true
			if err := r.o.SBOMGate.CheckNewRelease(ctx, product, c.Version, s, accept); err != nil {
				return err
			}
		}
	}
	if len(accept) > 0 && !used {
		return apperr.New(apperr.Invalid, "the submission accepts known vulnerabilities, but publishes no new release with an SBOM to accept them for")
	}
	return nil
}

func sortedCustoms(m map[string]*release.Custom) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
