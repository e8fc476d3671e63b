package main

import (
	"strings"
	"testing"
)

const sample = `{"Action":"run","Package":"p","Test":"TestPG"}
{"Action":"output","Package":"p","Test":"TestPG/Sub","Output":"    x_test.go:1: VIGIL-SERVICE-USED postgres\n"}
{"Action":"pass","Package":"p","Test":"TestPG/Sub"}
{"Action":"pass","Package":"p","Test":"TestPG"}
{"Action":"output","Package":"q","Test":"TestS3","Output":"    x_test.go:9: VIGIL-SERVICE-SKIPPED s3: versitygw not found\n"}
{"Action":"skip","Package":"q","Test":"TestS3"}
{"Action":"fail","Package":"q","Test":"TestOther"}
not json: build output
`

func TestCountsServiceTestsAndLeafResults(t *testing.T) {
	r := newReport()
	if err := r.read(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	if len(r.used["postgres"]) != 1 || len(r.skipped["s3"]) != 1 || len(r.used["s3"]) != 0 {
		t.Fatalf("used %v skipped %v", r.used, r.skipped)
	}
	if reason := r.skipped["s3"][key{"q", "TestS3"}]; reason != "versitygw not found" {
		t.Fatalf("reason %q", reason)
	}
	pass, fail, skip := r.leafCounts()
	if pass != 1 || fail != 1 || skip != 1 {
		t.Fatalf("pass %d fail %d skip %d (the parent TestPG must not count)", pass, fail, skip)
	}
}
