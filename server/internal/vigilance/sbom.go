package vigilance

import (
	"context"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// SBOM returns a release's indexed SBOM.
func (s *Service) SBOM(ctx context.Context, product, version string) (api.SBOM, error) {
	sb, err := s.st.SBOMs.SBOM(ctx, product, version)
	if apperr.Is(err, apperr.NotFound) {
		return api.SBOM{}, apperr.New(apperr.NotFound, "%s@%s has no SBOM (publish one with --sbom, or vigil sbom attach)", product, version)
	}
	if err != nil {
		return api.SBOM{}, err
	}
	out := api.SBOM{Release: product + "@" + version, Target: sb.Target, SHA256: sb.SHA256, SpecVersion: sb.SpecVersion, Components: []vigilance.Component{}}
	for _, c := range sb.Components {
		out.Components = append(out.Components, toComponent(c))
	}
	return out, nil
}
