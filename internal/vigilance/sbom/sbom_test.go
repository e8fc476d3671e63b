package sbom_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance/sbom"
)

func doc(spec, name, version, components string) string {
	return `{"bomFormat":"CycloneDX","specVersion":"` + spec + `","version":1,"metadata":{"component":{"type":"firmware","name":"` + name +
		`","version":"` + version + `"}},"components":[` + components + `]}`
}

func TestHostileOrWrongSBOMsAreRefusedWithTheReason(t *testing.T) {
	lib := `{"type":"library","bom-ref":"a","name":"zlib","version":"1.2.11"}`
	for name, c := range map[string]struct{ in, want string }{
		"not JSON":            {"\xff\xfe<bom/>", "not a CycloneDX JSON SBOM"},
		"SPDX":                {`{"spdxVersion":"SPDX-2.3","bomFormat":"SPDX"}`, "not CycloneDX"},
		"spec 1.1":            {doc("1.1", "demo-pump", "1.0.0", lib), "not one of 1.2 to 1.6"},
		"no product":          {doc("1.5", "", "1.0.0", lib), "does not name its product"},
		"shared bom-ref":      {doc("1.5", "demo-pump", "1.0.0", lib+","+lib), "used by two components"},
		"over the size limit": {doc("1.5", "demo-pump", "1.0.0", lib) + strings.Repeat(" ", sbom.MaxBytes), "over"},
	} {
		_, err := sbom.Parse(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestNestedComponentsAreFlattenedAndTheReleaseIsChecked(t *testing.T) {
	in := doc("1.6", "github.com/acme/pump-ui", "v2.0.0", `{"type":"library","bom-ref":"p","name":"parent","version":"1","components":[{"type":"library","bom-ref":"c","name":"child","version":"2","purl":"pkg:golang/example.com/child@v2.0.0"}]}`)
	s, err := sbom.Parse(bytes.NewReader([]byte(in)))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Components) != 2 || s.Components[1].Name != "child" || s.Components[1].PURL == "" {
		t.Fatalf("components %+v", s.Components)
	}
	if err := s.Describes("pump-ui", "2.0.0"); err != nil {
		t.Fatalf("a module path names its product by its last element: %v", err)
	}
	for _, c := range [][2]string{{"pump", "2.0.0"}, {"pump-ui", "2.0.1"}, {"acme/pump-ui-x", "2.0.0"}} {
		if err := s.Describes(c[0], c[1]); err == nil {
			t.Errorf("%s@%s accepted", c[0], c[1])
		}
	}
}

// FuzzSBOM: any bytes either parse into bounded components with unique
// bom-refs or are refused; nothing panics.
func FuzzSBOM(f *testing.F) {
	f.Add([]byte(doc("1.5", "demo-pump", "1.0.0", `{"type":"library","bom-ref":"a","name":"zlib","version":"1.2.11","cpe":"cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*"}`)))
	f.Add([]byte(doc("1.2", "x", "v1", `{"type":"library","name":"m","version":"v1","purl":"pkg:golang/m@v1","components":[{"type":"library","name":"n"}]}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := sbom.Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range s.Components {
			if c.BOMRef != "" && seen[c.BOMRef] {
				t.Fatalf("bom-ref %q twice", c.BOMRef)
			}
			seen[c.BOMRef] = true
			c.Package()
			c.Product()
		}
		if len(s.Components) > sbom.MaxComponents {
			t.Fatal("over the component limit")
		}
	})
}
