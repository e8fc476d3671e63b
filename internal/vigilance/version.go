package vigilance

import (
	"strings"

	"golang.org/x/mod/semver"
)

// CompareNVD compares two versions the way NVD configuration ranges need:
// split into runs of digits and runs of letters, digits compared as
// numbers, letters as text, a shorter version before a longer one that
// extends it. So 1.0.1f < 1.0.1g < 1.0.1u < 1.0.2, 3.0.2 < 3.0.13 and
// 1.8.2 < 1.8.31 — never a string comparison. Separators (. - _ +) only
// separate. It returns -1, 0 or +1.
func CompareNVD(a, b string) int {
	ta, tb := tokens(a), tokens(b)
	for i := 0; i < len(ta) && i < len(tb); i++ {
		if c := compareToken(ta[i], tb[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(ta) < len(tb):
		return -1
	case len(ta) > len(tb):
		return 1
	}
	return 0
}

// MaxVersionLength bounds a version string compared, in bytes: a longer
// one is compared by its first MaxVersionLength bytes only.
const MaxVersionLength = 128

func tokens(v string) []string {
	if len(v) > MaxVersionLength {
		v = v[:MaxVersionLength]
	}
	var out []string
	start, kind := -1, 0 // kind 1 digits, 2 letters
	flush := func(i int) {
		if start >= 0 {
			out = append(out, v[start:i])
		}
		start, kind = -1, 0
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		k := 0
		switch {
		case c >= '0' && c <= '9':
			k = 1
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			k = 2
		}
		if k == 0 {
			flush(i)
			continue
		}
		if k != kind {
			flush(i)
			start, kind = i, k
		}
	}
	flush(len(v))
	return out
}

func isDigits(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

func compareToken(a, b string) int {
	da, db := isDigits(a), isDigits(b)
	switch {
	case da && db:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case da: // a number sorts after letters (1.0.1a < 1.0.1.1)
		return 1
	case db:
		return -1
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

// GoVersion turns a Go module version as an SBOM or an OSV record writes it
// ("v1.4.0", "1.4.0", "v3.2.0+incompatible", a pseudo-version) into the
// canonical semver form golang.org/x/mod/semver compares, with build
// metadata (+incompatible) dropped; ok is false for anything else.
func GoVersion(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > MaxVersionLength {
		return "", false
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	if !semver.IsValid(v) {
		return "", false
	}
	return v, true
}
