// Package release defines what a Vigil release says about itself: the
// `custom` object signed into every TUF target, and the version rules the
// server, the release engineer's CLI and the device agent all apply. It is
// part of the wire format, so all three programs share it.
//
// Threat model: these fields are covered by the product key's signature, so
// a device can trust them as much as the image itself. The server checks
// their form when a release is published; the agent checks them against the
// device before installing (see Check).
package release

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

// Kinds, severities and cycles.
const (
	KindFull  = "full"
	KindDelta = "delta"
	// KindSBOM is the release's CycloneDX SBOM: published beside the
	// image, never installed.
	KindSBOM = "sbom"

	SeverityRoutine  = "routine"
	SeveritySecurity = "security"
	SeverityCritical = "critical"

	CycleRegular    = "regular"
	CycleOutOfCycle = "out-of-cycle"
)

// Limits, in bytes or counts.
const (
	MaxNameLength      = 128
	MaxHardwareEntries = 64
	MaxDowngradeFrom   = 64
)

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	filePattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	hardwarePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	hexSHA256       = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Custom is the signed `custom` object of a release target.
type Custom struct {
	Product         string   `json:"product"`
	Version         string   `json:"version"`
	Hardware        []string `json:"hardware"`
	MinFromVersion  string   `json:"min_from_version,omitempty"`
	Kind            string   `json:"kind"`
	DeltaBaseSHA256 string   `json:"delta_base_sha256,omitempty"`
	// ResultSHA256 and ResultLength, on a delta, are the full image it
	// rebuilds: the image target of the same release.
	ResultSHA256 string `json:"result_sha256,omitempty"`
	ResultLength int64  `json:"result_length,omitempty"`
	Severity     string `json:"severity"`
	Cycle        string `json:"cycle"`
	SBOM         string `json:"sbom,omitempty"`
	// SBOMSHA256 is the sha256 of the SBOM target SBOM names.
	SBOMSHA256    string   `json:"sbom_sha256,omitempty"`
	DowngradeFrom []string `json:"downgrade_from,omitempty"`
	Notes         string   `json:"notes,omitempty"`
	// UnpackedLength is what a tar image unpacks to, in bytes (the sum of
	// its files); the agent refuses to unpack more. The CLI measures and
	// signs it for archive images; 0 or absent means not signed.
	UnpackedLength int64 `json:"unpacked_length,omitempty"`
}

// MaxUnpackedLength is the largest unpacked_length a release may sign, in
// bytes.
const MaxUnpackedLength = 64 << 30

// MaxResultLength is the largest image a delta may rebuild, in bytes.
const MaxResultLength = 64 << 30

// MaxNotesLength bounds the release notes carried in metadata, in bytes.
const MaxNotesLength = 4096

// ValidateProduct checks a product (and role) name.
func ValidateProduct(p string) error {
	if len(p) > MaxNameLength || !namePattern.MatchString(p) {
		return fmt.Errorf("product name %q: use lower-case letters, digits and '-', starting with a letter or digit, at most %d bytes", p, MaxNameLength)
	}
	switch p {
	case "root", "targets", "snapshot", "timestamp":
		return fmt.Errorf("product name %q is a TUF top-level role name", p)
	}
	return nil
}

// ValidateFileName checks the file part of a target path.
func ValidateFileName(n string) error {
	if len(n) > MaxNameLength || !filePattern.MatchString(n) {
		return fmt.Errorf("file name %q: use letters, digits, '.', '_', '+' and '-', at most %d bytes", n, MaxNameLength)
	}
	return nil
}

// TargetPath is the TUF target path of a release file: PRODUCT/FILE.
func TargetPath(product, file string) string { return product + "/" + file }

// SplitTargetPath splits PRODUCT/FILE and validates both parts.
func SplitTargetPath(path string) (product, file string, err error) {
	product, file, ok := strings.Cut(path, "/")
	if !ok {
		return "", "", fmt.Errorf("target path %q is not PRODUCT/FILE", path)
	}
	if err := ValidateProduct(product); err != nil {
		return "", "", err
	}
	if err := ValidateFileName(file); err != nil {
		return "", "", err
	}
	return product, file, nil
}

// ValidateVersion checks that v is semantic versioning (MAJOR.MINOR.PATCH,
// optional -prerelease and +build), without a leading "v".
func ValidateVersion(v string) error {
	if v == "" || strings.HasPrefix(v, "v") || !semver.IsValid("v"+v) || strings.Count(strings.SplitN(strings.SplitN(v, "+", 2)[0], "-", 2)[0], ".") != 2 {
		return fmt.Errorf("version %q is not semantic versioning such as 1.4.2", v)
	}
	return nil
}

// Compare compares two valid versions by semver precedence: -1, 0 or +1.
func Compare(a, b string) int { return semver.Compare("v"+a, "v"+b) }

// Validate checks every field's form. product is the role the target is
// published under.
func (c *Custom) Validate(product string) error {
	if c.Product != product {
		return fmt.Errorf("custom.product %q does not match the product role %q", c.Product, product)
	}
	if err := ValidateVersion(c.Version); err != nil {
		return fmt.Errorf("custom.version: %w", err)
	}
	if c.Kind == KindSBOM {
		return c.validateSBOM()
	}
	if len(c.Hardware) == 0 || len(c.Hardware) > MaxHardwareEntries {
		return fmt.Errorf("custom.hardware must list 1 to %d compatible hardware revisions", MaxHardwareEntries)
	}
	for _, h := range c.Hardware {
		if len(h) > MaxNameLength || !hardwarePattern.MatchString(h) {
			return fmt.Errorf("custom.hardware entry %q is not a hardware revision name", h)
		}
	}
	if c.MinFromVersion != "" {
		if err := ValidateVersion(c.MinFromVersion); err != nil {
			return fmt.Errorf("custom.min_from_version: %w", err)
		}
		if Compare(c.MinFromVersion, c.Version) >= 0 {
			return fmt.Errorf("custom.min_from_version %s is not older than the version %s", c.MinFromVersion, c.Version)
		}
	}
	switch c.Kind {
	case KindFull:
		if c.DeltaBaseSHA256 != "" || c.ResultSHA256 != "" || c.ResultLength != 0 {
			return fmt.Errorf("custom.delta_base_sha256, result_sha256 and result_length are only for kind %q", KindDelta)
		}
	case KindDelta:
		if !hexSHA256.MatchString(c.DeltaBaseSHA256) {
			return fmt.Errorf("custom.delta_base_sha256 %q is not 64 lower-case hex digits", c.DeltaBaseSHA256)
		}
		if !hexSHA256.MatchString(c.ResultSHA256) {
			return fmt.Errorf("custom.result_sha256 %q is not 64 lower-case hex digits", c.ResultSHA256)
		}
		if c.ResultLength <= 0 || c.ResultLength > MaxResultLength {
			return fmt.Errorf("custom.result_length %d is not between 1 and %d bytes", c.ResultLength, int64(MaxResultLength))
		}
		if c.DeltaBaseSHA256 == c.ResultSHA256 {
			return fmt.Errorf("custom.delta_base_sha256 is the result itself: a delta from an image to itself")
		}
	default:
		return fmt.Errorf("custom.kind %q is not %q or %q", c.Kind, KindFull, KindDelta)
	}
	switch c.Severity {
	case SeverityRoutine, SeveritySecurity, SeverityCritical:
	default:
		return fmt.Errorf("custom.severity %q is not routine, security or critical", c.Severity)
	}
	switch c.Cycle {
	case CycleRegular, CycleOutOfCycle:
	default:
		return fmt.Errorf("custom.cycle %q is not regular or out-of-cycle", c.Cycle)
	}
	if c.SBOM != "" {
		if p, _, err := SplitTargetPath(c.SBOM); err != nil || p != product {
			return fmt.Errorf("custom.sbom %q is not a target path of product %s", c.SBOM, product)
		}
		if !hexSHA256.MatchString(c.SBOMSHA256) {
			return fmt.Errorf("custom.sbom_sha256 %q is not 64 lower-case hex digits", c.SBOMSHA256)
		}
	} else if c.SBOMSHA256 != "" {
		return fmt.Errorf("custom.sbom_sha256 without custom.sbom")
	}
	if len(c.DowngradeFrom) > MaxDowngradeFrom {
		return fmt.Errorf("custom.downgrade_from lists more than %d versions", MaxDowngradeFrom)
	}
	for _, v := range c.DowngradeFrom {
		if err := ValidateVersion(v); err != nil {
			return fmt.Errorf("custom.downgrade_from: %w", err)
		}
		if Compare(v, c.Version) <= 0 {
			return fmt.Errorf("custom.downgrade_from %s is not newer than the recall version %s", v, c.Version)
		}
	}
	if c.UnpackedLength < 0 || c.UnpackedLength > MaxUnpackedLength {
		return fmt.Errorf("custom.unpacked_length %d is not between 0 and %d bytes", c.UnpackedLength, int64(MaxUnpackedLength))
	}
	if len(c.Notes) > MaxNotesLength {
		return fmt.Errorf("custom.notes is %d bytes, over the limit of %d", len(c.Notes), MaxNotesLength)
	}
	return nil
}

// validateSBOM checks an SBOM target's fields: the release it describes
// (product, version) and nothing that would make it installable.
func (c *Custom) validateSBOM() error {
	if len(c.Hardware) > 0 || c.MinFromVersion != "" || c.DeltaBaseSHA256 != "" || c.ResultSHA256 != "" || c.ResultLength != 0 || len(c.DowngradeFrom) > 0 || c.SBOM != "" || c.UnpackedLength != 0 {
		return fmt.Errorf("an sbom target carries only product, version and notes")
	}
	if len(c.Notes) > MaxNotesLength {
		return fmt.Errorf("custom.notes is %d bytes, over the limit of %d", len(c.Notes), MaxNotesLength)
	}
	return nil
}

// Parse decodes and validates a target's raw custom field, rejecting
// unknown fields so a typo cannot silently drop a safety check.
func Parse(raw *json.RawMessage, product string) (*Custom, error) {
	if raw == nil {
		return nil, fmt.Errorf("target has no custom field")
	}
	dec := json.NewDecoder(strings.NewReader(string(*raw)))
	dec.DisallowUnknownFields()
	var c Custom
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("custom field: %w", err)
	}
	if err := c.Validate(product); err != nil {
		return nil, err
	}
	return &c, nil
}

// Device is what a device says about itself when choosing a release.
type Device struct {
	Product          string
	Hardware         string
	InstalledVersion string
}

// Refusal names the check a release failed for a device.
type Refusal struct {
	Check  string // kind, product, hardware, downgrade, not-newer, min-from-version
	Reason string
}

// Refusal checks, as Refusal.Check names them.
const (
	CheckKind           = "kind"
	CheckProduct        = "product"
	CheckHardware       = "hardware"
	CheckDowngrade      = "downgrade"
	CheckNotNewer       = "not-newer"
	CheckMinFromVersion = "min-from-version"
)

// Installable reports whether a target of this kind is an image the agent
// writes into a slot as it is. Only full images are: a delta (or anything
// a newer publisher invents) written as if it were the image would brick
// the slot, so the agent refuses it here, whatever else it says.
func (c *Custom) Installable() bool { return c.Kind == KindFull }

func (r *Refusal) Error() string { return r.Check + ": " + r.Reason }

// Check decides whether release c may be installed on device d. A release
// must be for the device's product and hardware, newer than the installed
// version (unless it is a signed recall naming the installed version in
// downgrade_from), and its min_from_version must not be above the installed
// version.
func (c *Custom) Check(d Device) *Refusal {
	if !c.Installable() {
		return &Refusal{CheckKind, fmt.Sprintf("target kind %q is not an image this agent installs (it installs %q images)", c.Kind, KindFull)}
	}
	if c.Product != d.Product {
		return &Refusal{CheckProduct, fmt.Sprintf("release is for product %s, device is %s", c.Product, d.Product)}
	}
	if !slices.Contains(c.Hardware, d.Hardware) {
		return &Refusal{CheckHardware, fmt.Sprintf("release supports hardware %s, device is %s", strings.Join(c.Hardware, ","), d.Hardware)}
	}
	switch cmp := Compare(c.Version, d.InstalledVersion); {
	case cmp < 0 && slices.Contains(c.DowngradeFrom, d.InstalledVersion):
		return nil // a signed recall for exactly this version
	case cmp < 0:
		return &Refusal{CheckDowngrade, fmt.Sprintf("release %s is older than the installed %s and is not a signed recall of it", c.Version, d.InstalledVersion)}
	case cmp == 0:
		return &Refusal{CheckNotNewer, fmt.Sprintf("release %s is already installed", c.Version)}
	}
	if c.MinFromVersion != "" && Compare(d.InstalledVersion, c.MinFromVersion) < 0 {
		return &Refusal{CheckMinFromVersion, fmt.Sprintf("release %s installs only over %s or newer; the device runs %s", c.Version, c.MinFromVersion, d.InstalledVersion)}
	}
	return nil
}

// Published is one published target of a product role, with its signed
// release fields: what the server's vigilance indexes and reports on.
type Published struct {
	Product string
	Target  string // target path, PRODUCT/FILE
	SHA256  string
	Length  int64
	Custom  *Custom
}

// Release names the release as "PRODUCT@VERSION".
func (p Published) Release() string { return p.Product + "@" + p.Custom.Version }
