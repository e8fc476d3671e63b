package repotool

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
)

// sbomFile is an SBOM checked for publishing.
type sbomFile struct {
	name string // target file name
	path string // target path
	img  image
	doc  *sbom.SBOM
}

// SBOMName is the target file name of a release's SBOM.
func SBOMName(product, version string) string { return product + "-" + version + ".cdx.json" }

// readSBOMFile parses an SBOM (CycloneDX JSON 1.2–1.6) and checks that it
// describes product at version, before anything is uploaded.
func readSBOMFile(file, product, version string) (*sbomFile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := sbom.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("--sbom %s: %w", file, err)
	}
	if err := doc.Describes(product, version); err != nil {
		return nil, fmt.Errorf("--sbom %s: %w", file, err)
	}
	sum, length, err := HashFile(file)
	if err != nil {
		return nil, err
	}
	name := SBOMName(product, version)
	return &sbomFile{name: name, path: release.TargetPath(product, name), img: image{path: file, sha256: sum, length: length}, doc: doc}, nil
}

func (f *sbomFile) target(product, version string) newTarget {
	return newTarget{path: f.path, custom: release.Custom{Product: product, Version: version, Kind: release.KindSBOM}, img: f.img}
}

// AttachSBOM publishes an SBOM for a release that has none: the product
// role gets an SBOM target for the version (signed with the product keys,
// like a publish). Published releases are immutable, so the image's own
// custom.sbom stays empty; the SBOM target names the release by its
// signed product and version.
func (s *Session) AttachSBOM(ctx context.Context, product, version, file string, keys []*Signer) (*PublishResult, error) {
	doc, err := readSBOMFile(file, product, version)
	if err != nil {
		return nil, err
	}
	tc, err := s.Refresh()
	if err != nil {
		return nil, err
	}
	cur, err := tc.ProductRole(product)
	if err != nil {
		return nil, err
	}
	found := false
	for p, tf := range cur.Signed.Targets {
		c, err := release.Parse(tf.Custom, product)
		if err != nil || c.Version != version {
			continue
		}
		if c.Kind == release.KindSBOM {
			return nil, fmt.Errorf("%s@%s has an SBOM already (%s); SBOMs are immutable like releases", product, version, p)
		}
		found = true
	}
	if !found {
		return nil, fmt.Errorf("%s@%s is not published", product, version)
	}
	if err := checkDelegatedKeys(tc, product, keys); err != nil {
		return nil, err
	}
	res := &PublishResult{Target: doc.path, SHA256: doc.img.sha256, Length: doc.img.length, SBOM: doc.path}
	if s.DryRun {
		return res, nil
	}
	if res.Uploaded, err = s.upload(ctx, product, doc.name, doc.img); err != nil {
		return nil, err
	}
	pb, err := signWithTargets(cur, keys, []newTarget{doc.target(product, version)})
	if err != nil {
		return nil, err
	}
	resp, err := s.submit(ctx, api.SubmitRequest{Products: map[string]json.RawMessage{product: pb}})
	if err != nil {
		return nil, err
	}
	res.Versions = resp.Versions
	return res, nil
}
