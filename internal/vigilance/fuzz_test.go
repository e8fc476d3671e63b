package vigilance_test

import (
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

// FuzzVersionComparison: NVD-style comparison is total and antisymmetric
// on any input (OpenSSL letters, dates, garbage), and never panics.
func FuzzVersionComparison(f *testing.F) {
	for _, p := range [][2]string{{"1.0.1f", "1.0.1g"}, {"3.0.13", "3.0.2"}, {"2023.07", "2023.10"}, {"1.2.11", "1.2.11-r1"}, {"", "0"}, {"99999999999999999999999", "1"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := vigilance.CompareNVD(a, b), vigilance.CompareNVD(b, a)
		if ab != -ba {
			t.Fatalf("CompareNVD(%q, %q) = %d but reversed %d", a, b, ab, ba)
		}
		if vigilance.CompareNVD(a, a) != 0 {
			t.Fatalf("%q is not equal to itself", a)
		}
		vigilance.ParseCPE(a)
	})
}
