package vigilance_test

import (
	"testing"

	"github.com/vigil-ota/vigil/internal/vigilance"
)

func golang(module, version string) vigilance.Component {
	return vigilance.Component{BOMRef: "pkg:golang/" + module + "@" + version, Name: module, Version: version, PURL: "pkg:golang/" + module + "@" + version}
}

func cpe(vendor, product, version string) vigilance.Component {
	return vigilance.Component{BOMRef: product + "@" + version, Name: product, Version: version, CPE: "cpe:2.3:a:" + vendor + ":" + product + ":" + version + ":*:*:*:*:*:*:*"}
}

func osvMatches(t *testing.T, id string, c vigilance.Component) bool {
	t.Helper()
	r := load(t).osv[id]
	if r == nil {
		t.Fatalf("no record %s in the test data", id)
	}
	return vigilance.MatchOSV(r, c)
}

func nvdMatches(t *testing.T, id string, c vigilance.Component) bool {
	t.Helper()
	r := load(t).nvd[id]
	if r == nil {
		t.Fatalf("no record %s in the test data", id)
	}
	return len(vigilance.MatchNVD(r, c)) > 0
}

func TestFixedIsExclusive(t *testing.T) {
	if osvMatches(t, "GO-2020-0036", golang("gopkg.in/yaml.v2", "v2.2.8")) {
		t.Error("yaml.v2 2.2.8 matched GO-2020-0036, fixed in 2.2.8")
	}
	if osvMatches(t, "GO-2020-0019", golang("github.com/gorilla/websocket", "v1.4.1")) {
		t.Error("websocket 1.4.1 matched GO-2020-0019, fixed in 1.4.1")
	}
	if !osvMatches(t, "GO-2020-0019", golang("github.com/gorilla/websocket", "v1.4.0")) {
		t.Error("websocket 1.4.0, before the fix, did not match GO-2020-0019")
	}
}

func TestAPrereleaseOfALaterVersionIsPastAnEarlierFix(t *testing.T) {
	if osvMatches(t, "GO-2020-0015", golang("golang.org/x/text", "v0.3.5-0.20201125200606-c27b9fd57aec")) {
		t.Error("x/text 0.3.5 pre-release matched GO-2020-0015, fixed in 0.3.3")
	}
}

func TestPseudoVersionsCompareAsSemver(t *testing.T) {
	net := golang("golang.org/x/net", "v0.0.0-20200707034311-ab3426394381")
	for _, id := range []string{"GO-2020-0014", "GO-2021-0078", "GO-2022-0192", "GO-2022-0193", "GO-2022-0197", "GO-2022-0536", "GO-2023-1495"} {
		if osvMatches(t, id, net) {
			t.Errorf("x/net of 2020-07-07 matched %s (fixed by an older pseudo-version, or introduced later)", id)
		}
	}
	if !osvMatches(t, "GO-2021-0238", net) {
		t.Error("x/net of 2020-07-07 did not match GO-2021-0238")
	}
}

func TestIntroducedIsInclusiveAndLaterIntroductionsDoNotMatch(t *testing.T) {
	for id, c := range map[string]vigilance.Component{
		"GO-2020-0006": golang("github.com/miekg/dns", "v1.1.30"),
		"GO-2020-0008": golang("github.com/miekg/dns", "v1.1.30"),
		"GO-2020-0028": golang("github.com/miekg/dns", "v1.1.30"),
		"GO-2023-2328": golang("github.com/go-resty/resty/v2", "v2.3.0"),
		"GO-2026-5841": golang("github.com/klauspost/compress", "v1.9.7"),
		"GO-2023-2163": golang("github.com/nats-io/nkeys", "v0.1.0"),
	} {
		if osvMatches(t, id, c) {
			t.Errorf("%s matched %s", c.PURL, id)
		}
	}
}

func TestIncompatibleIsIgnoredAndIntroducedPseudoVersionCovers(t *testing.T) {
	for _, v := range []string{"v3.2.0", "v3.2.0+incompatible"} {
		if !osvMatches(t, "GO-2020-0017", golang("github.com/dgrijalva/jwt-go", v)) {
			t.Errorf("jwt-go %s did not match GO-2020-0017", v)
		}
	}
}

func TestWithdrawnRecordsMatchNothing(t *testing.T) {
	r := load(t).osv["GO-2026-4923"]
	if r == nil || !r.Withdrawn {
		t.Fatal("GO-2026-4923 is not read as withdrawn")
	}
	if osvMatches(t, "GO-2026-4923", golang("go.etcd.io/bbolt", "v1.3.5")) {
		t.Error("a withdrawn record matched")
	}
}

func TestKEVOnlyThroughRelatedIsShownAsRelated(t *testing.T) {
	fd := load(t)
	f := vigilance.NewFinding("x@1", golang("golang.org/x/net", "v0.0.0-20200707034311-ab3426394381"), fd.osv["GO-2023-2102"], nil, fd.ix, fd.kev)
	if f.KEV || len(f.KEVRelated) != 1 || f.KEVRelated[0] != "CVE-2023-44487" {
		t.Fatalf("kev %v, related %v", f.KEV, f.KEVRelated)
	}
}

func TestOpenSSLLetterVersionsCompareByRuns(t *testing.T) {
	for _, c := range [][2]string{{"1.0.1f", "1.0.1g"}, {"1.0.1g", "1.0.1u"}, {"1.0.1u", "1.0.2"}, {"1.1.1k", "1.1.1n"}, {"1.1.1n", "1.1.1w"},
		{"3.0.2", "3.0.13"}, {"1.8.2", "1.8.31"}, {"1.0.1", "1.0.1a"}, {"7.69.0", "7.80.0"}, {"8.4.0", "8.5.0"}} {
		if vigilance.CompareNVD(c[0], c[1]) >= 0 || vigilance.CompareNVD(c[1], c[0]) <= 0 {
			t.Errorf("%s < %s does not hold", c[0], c[1])
		}
	}
	if vigilance.CompareNVD("1.2.011", "1.2.11") != 0 {
		t.Error("leading zeros change a number")
	}
	if !nvdMatches(t, "CVE-2014-0160", cpe("openssl", "openssl", "1.0.1f")) || nvdMatches(t, "CVE-2014-0160", cpe("openssl", "openssl", "1.0.1g")) {
		t.Error("Heartbleed's range 1.0.1 <= v < 1.0.1g")
	}
	if nvdMatches(t, "CVE-2022-0778", cpe("openssl", "openssl", "1.1.1w")) || !nvdMatches(t, "CVE-2022-0778", cpe("openssl", "openssl", "1.1.1k")) {
		t.Error("CVE-2022-0778's range [1.1.0, 1.1.1n)")
	}
	if nvdMatches(t, "CVE-2014-0160", cpe("openssl", "openssl", "1.0.1u")) || nvdMatches(t, "CVE-2022-0778", cpe("openssl", "openssl", "1.0.1u")) {
		t.Error("1.0.1u is in neither range")
	}
}

func TestCurlIsMatchedAsHaxxLibcurlOnly(t *testing.T) {
	if !nvdMatches(t, "CVE-2023-38545", cpe("haxx", "libcurl", "7.80.0")) {
		t.Error("haxx:libcurl 7.80.0 did not match")
	}
	for _, c := range []vigilance.Component{cpe("haxx", "curl", "7.80.0"), cpe("curl", "curl", "7.80.0"), cpe("haxx", "libcurl", "8.4.0")} {
		if nvdMatches(t, "CVE-2023-38545", c) {
			t.Errorf("%s matched", c.CPE)
		}
	}
}

func TestEndIncludingBoundsAreInclusive(t *testing.T) {
	if !nvdMatches(t, "CVE-2022-48174", cpe("busybox", "busybox", "1.36.1")) || nvdMatches(t, "CVE-2022-48174", cpe("busybox", "busybox", "1.37.0")) {
		t.Error("BusyBox: versionEndIncluding 1.36.1")
	}
	if !nvdMatches(t, "CVE-2022-37434", cpe("zlib", "zlib", "1.2.12")) || nvdMatches(t, "CVE-2022-37434", cpe("zlib", "zlib", "1.3.1")) {
		t.Error("zlib: versionEndIncluding 1.2.12")
	}
}

func TestRejectedNVDRecordsMatchNothing(t *testing.T) {
	r := *load(t).nvd["CVE-2014-0160"]
	r.Withdrawn = true
	if len(vigilance.MatchNVD(&r, cpe("openssl", "openssl", "1.0.1f"))) > 0 {
		t.Error("a rejected record matched")
	}
}
