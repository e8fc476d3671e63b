// Package sbom reads CycloneDX JSON SBOMs (spec 1.2 to 1.6) with
// github.com/CycloneDX/cyclonedx-go and returns what vigilance needs: the
// product the SBOM describes (metadata.component) and its components,
// nested ones flattened, each with bom-ref, name, version, purl and cpe.
//
// Threat model: an SBOM is uploaded by a release engineer and published as
// a signed target, but it is still parsed as untrusted input: its size and
// component count are bounded, and a bom-ref shared by two components is
// refused (findings point at components by it).
package sbom

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// Limits, with their units.
const (
	// MaxBytes bounds an SBOM file.
	MaxBytes = 32 << 20
	// MaxComponents bounds the components of one SBOM.
	MaxComponents = 100000
)

// SpecVersions are the CycloneDX versions read.
var SpecVersions = []cdx.SpecVersion{cdx.SpecVersion1_2, cdx.SpecVersion1_3, cdx.SpecVersion1_4, cdx.SpecVersion1_5, cdx.SpecVersion1_6}

// SBOM is a parsed SBOM.
type SBOM struct {
	SpecVersion string
	Product     string // metadata.component.name
	Version     string // metadata.component.version
	Components  []vigilance.Component
}

// Parse reads a CycloneDX JSON SBOM of at most MaxBytes.
func Parse(r io.Reader) (*SBOM, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("the SBOM is over %d bytes", MaxBytes)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, fmt.Errorf("not a CycloneDX JSON SBOM: %w", err)
	}
	if bom.BOMFormat != "CycloneDX" {
		return nil, fmt.Errorf("bomFormat is %q, not CycloneDX", bom.BOMFormat)
	}
	if !slices.Contains(SpecVersions, bom.SpecVersion) {
		return nil, fmt.Errorf("CycloneDX spec version %s is not one of 1.2 to 1.6", bom.SpecVersion)
	}
	s := &SBOM{SpecVersion: bom.SpecVersion.String()}
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		s.Product, s.Version = bom.Metadata.Component.Name, bom.Metadata.Component.Version
	}
	if s.Product == "" {
		return nil, fmt.Errorf("the SBOM does not name its product (metadata.component.name)")
	}
	seen := map[string]bool{}
	var walk func([]cdx.Component) error
	walk = func(cs []cdx.Component) error {
		for _, c := range cs {
			if len(s.Components) >= MaxComponents {
				return fmt.Errorf("more than %d components", MaxComponents)
			}
			ref := c.BOMRef
			if ref == "" {
				ref = c.PackageURL
			}
			if ref != "" && seen[ref] {
				return fmt.Errorf("bom-ref %q is used by two components", ref)
			}
			seen[ref] = true
			s.Components = append(s.Components, vigilance.Component{BOMRef: ref, Name: c.Name, Version: c.Version, PURL: c.PackageURL, CPE: c.CPE})
			if c.Components != nil {
				if err := walk(*c.Components); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if bom.Components != nil {
		if err := walk(*bom.Components); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Describes checks that the SBOM is of product and, when it names a
// version, of version: metadata.component.name is the product, or a
// module path whose last element is (github.com/acme/pump-ui describes
// product pump-ui); a version may carry Go's "v" prefix.
func (s *SBOM) Describes(product, version string) error {
	if s.Product != product && !strings.HasSuffix(s.Product, "/"+product) {
		return fmt.Errorf("the SBOM describes %q (metadata.component.name), not product %s", s.Product, product)
	}
	if s.Version != "" && s.Version != version && s.Version != "v"+version {
		return fmt.Errorf("the SBOM describes version %s of %s (metadata.component.version), not %s", s.Version, product, version)
	}
	return nil
}
