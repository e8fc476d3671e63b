package vigilance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
	openvex "github.com/openvex/go-vex/pkg/vex"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// VEX document media types.
const (
	MediaCycloneDX = "application/vnd.cyclonedx+json"
	MediaOpenVEX   = "application/json"
	// VEXAuthor signs the documents' author field.
	VEXAuthor = "Vigil vulnerability management"
)

// cdxJustification maps OpenVEX justifications to CycloneDX's.
var cdxJustification = map[string]cdx.ImpactAnalysisJustification{
	"component_not_present":                             cdx.IAJCodeNotPresent,
	"vulnerable_code_not_present":                       cdx.IAJCodeNotPresent,
	"vulnerable_code_not_in_execute_path":               cdx.IAJCodeNotReachable,
	"vulnerable_code_cannot_be_controlled_by_adversary": cdx.IAJRequiresEnvironment,
	"inline_mitigations_already_exist":                  cdx.IAJProtectedByMitigatingControl,
}

// cdxState maps a triage's VEX status to a CycloneDX analysis state; an
// untriaged finding is in triage.
var cdxState = map[string]cdx.ImpactAnalysisState{
	api.VEXNotAffected:        cdx.IASNotAffected,
	api.VEXAffected:           cdx.IASExploitable,
	api.VEXFixed:              cdx.IASResolved,
	api.VEXUnderInvestigation: cdx.IASInTriage,
	"":                        cdx.IASInTriage,
}

// VEX exports one statement per open finding of a release, from its
// triage, as CycloneDX (1.6 JSON) or OpenVEX. It returns the document and
// its media type.
func (s *Service) VEX(ctx context.Context, product, version, format string) ([]byte, string, error) {
	if format == "" {
		format = api.VEXFormatCycloneDX
	}
	if format != api.VEXFormatCycloneDX && format != api.VEXFormatOpenVEX {
		return nil, "", apperr.New(apperr.Invalid, "VEX format %q is not cyclonedx or openvex", format)
	}
	sb, err := s.st.SBOMs.SBOM(ctx, product, version)
	if apperr.Is(err, apperr.NotFound) {
		return nil, "", apperr.New(apperr.NotFound, "%s@%s has no SBOM, so there is nothing to state VEX about (vigil sbom attach)", product, version)
	}
	if err != nil {
		return nil, "", err
	}
	l, err := s.Findings(ctx, Filter{Release: product + "@" + version, Status: vigilance.StatusOpen})
	if err != nil {
		return nil, "", err
	}
	if format == api.VEXFormatOpenVEX {
		b, err := s.openVEX(product, version, l.Findings)
		return b, MediaOpenVEX, err
	}
	b, err := s.cycloneDXVEX(sb, l.Findings)
	return b, MediaCycloneDX, err
}

func (s *Service) cycloneDXVEX(sb state.SBOMRecord, fs []api.FindingDetail) ([]byte, error) {
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid.NewSHA1(uuid.NameSpaceURL, []byte("vigil-vex:"+sb.Product+"@"+sb.Version+":"+sb.SHA256)).String()
	bom.Metadata = &cdx.Metadata{Timestamp: s.now().Format(time.RFC3339),
		Component: &cdx.Component{Type: cdx.ComponentTypeFirmware, Name: sb.Product, Version: sb.Version, BOMRef: sb.Product + "@" + sb.Version}}
	comps := []cdx.Component{}
	seen := map[string]bool{}
	vulns := []cdx.Vulnerability{}
	for _, f := range fs {
		c := f.Component
		if !seen[c.BOMRef] {
			seen[c.BOMRef] = true
			comps = append(comps, cdx.Component{Type: cdx.ComponentTypeLibrary, BOMRef: c.BOMRef, Name: c.Name, Version: c.Version, PackageURL: c.PURL, CPE: c.CPE})
		}
		vulns = append(vulns, cdxVulnerability(f))
	}
	bom.Components, bom.Vulnerabilities = &comps, &vulns
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return nil, fmt.Errorf("encode CycloneDX VEX: %w", err)
	}
	return buf.Bytes(), nil
}

func cdxVulnerability(f api.FindingDetail) cdx.Vulnerability {
	v := cdx.Vulnerability{BOMRef: f.ID, ID: f.VulnerabilityID, Description: f.Summary, Affects: &[]cdx.Affects{{Ref: f.Component.BOMRef}}}
	src := "NVD"
	if f.Source == vigilance.SourceOSV {
		src = "OSV"
	}
	v.Source = &cdx.Source{Name: src}
	var ratings []cdx.VulnerabilityRating
	for _, c := range f.CVSS {
		score := c.BaseScore
		m := cdx.ScoringMethodOther
		switch c.Version {
		case "3.1":
			m = cdx.ScoringMethodCVSSv31
		case "3.0":
			m = cdx.ScoringMethodCVSSv3
		case "4.0":
			m = cdx.ScoringMethodCVSSv4
		}
		ratings = append(ratings, cdx.VulnerabilityRating{Score: &score, Method: m, Vector: c.Vector})
	}
	if len(ratings) > 0 {
		v.Ratings = &ratings
	}
	a := &cdx.VulnerabilityAnalysis{State: cdxState[f.Triage.VEXStatus], Justification: cdxJustification[f.Triage.Justification], Detail: f.Triage.Rationale}
	if f.Triage.Action != "" {
		a.Detail += "\nAction: " + f.Triage.Action
	}
	switch {
	case f.Triage.VEXStatus == api.VEXAffected && f.FixingRelease != nil:
		a.Response = &[]cdx.ImpactAnalysisResponse{cdx.IARUpdate}
	case f.Triage.VEXStatus == api.VEXAffected && f.Triage.Risk == vigilance.RiskControlled:
		a.Response = &[]cdx.ImpactAnalysisResponse{cdx.IARWillNotFix}
	}
	if !f.Triage.At.IsZero() {
		a.LastUpdated = f.Triage.At.Format(time.RFC3339)
	}
	v.Analysis = a
	return v
}

func (s *Service) openVEX(product, version string, fs []api.FindingDetail) ([]byte, error) {
	doc := openvex.New()
	now := s.now()
	doc.Timestamp, doc.Author = &now, VEXAuthor
	productID := "pkg:generic/" + product + "@" + version
	for _, f := range fs {
		st := openvex.Statement{Vulnerability: openvex.Vulnerability{Name: openvex.VulnerabilityID(f.VulnerabilityID), Description: f.Summary},
			Products: []openvex.Product{{Component: openvex.Component{ID: productID}, Subcomponents: []openvex.Subcomponent{{Component: subcomponentOf(f.Component)}}}},
			Status:   openvex.StatusUnderInvestigation, StatusNotes: f.Triage.Rationale}
		for _, a := range append(append([]string{}, f.CVEs...), f.Aliases...) {
			if a != f.VulnerabilityID && !containsID(st.Vulnerability.Aliases, a) {
				st.Vulnerability.Aliases = append(st.Vulnerability.Aliases, openvex.VulnerabilityID(a))
			}
		}
		if f.Triage.VEXStatus != "" {
			st.Status = openvex.Status(f.Triage.VEXStatus)
		}
		switch st.Status {
		case openvex.StatusNotAffected:
			st.Justification = openvex.Justification(f.Triage.Justification)
		case openvex.StatusAffected:
			st.ActionStatement = f.Triage.Action
		}
		if err := st.Validate(); err != nil {
			return nil, fmt.Errorf("finding %s: %w", f.ID, err)
		}
		doc.Statements = append(doc.Statements, st)
	}
	id, err := doc.GenerateCanonicalID()
	if err != nil {
		return nil, err
	}
	doc.ID = id
	var buf bytes.Buffer
	if err := doc.ToJSON(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func containsID(ids []openvex.VulnerabilityID, id string) bool {
	for _, x := range ids {
		if string(x) == id {
			return true
		}
	}
	return false
}

func subcomponentOf(c vigilance.Component) openvex.Component {
	out := openvex.Component{ID: c.PURL, Identifiers: map[openvex.IdentifierType]string{}}
	if c.PURL != "" {
		out.Identifiers[openvex.PURL] = c.PURL
	}
	if c.CPE != "" {
		out.Identifiers[openvex.CPE23] = c.CPE
	}
	if out.ID == "" {
		h := sha256.Sum256([]byte(c.BOMRef))
		out.ID = "urn:vigil:component:" + hex.EncodeToString(h[:8])
	}
	return out
}
