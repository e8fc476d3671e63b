package s3blob_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/blob/blobtest"
	"github.com/vigil-ota/vigil/server/internal/blob/s3blob"
	"github.com/vigil-ota/vigil/test/testsvc"
)

func open(t testing.TB, gw testsvc.S3) *s3blob.Store {
	t.Helper()
	cfg, err := s3blob.ParseURL(gw.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = gw.AccessKey, gw.SecretKey
	s, err := s3blob.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVersityS3Conformance(t *testing.T) {
	gw := testsvc.StartS3(t)
	n := 0
	blobtest.Run(t, func(t *testing.T) blob.Store {
		// One gateway, a fresh bucket per subtest.
		n++
		b := gw
		b.Bucket = fmt.Sprintf("%s-%d", gw.Bucket, n)
		if err := gw.Client(t).MakeBucket(t.Context(), b.Bucket, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
		return open(t, b)
	}, blobtest.Options{})
}

func TestParseURL(t *testing.T) {
	good := "s3://patches?endpoint=127.0.0.1:9000&region=eu-west-1&tls=false&path_style=false"
	cfg, err := s3blob.ParseURL(good)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bucket != "patches" || cfg.Endpoint != "127.0.0.1:9000" || cfg.Region != "eu-west-1" || cfg.TLS || cfg.PathStyle {
		t.Fatalf("parsed %+v", cfg)
	}
	for raw, wantErr := range map[string]string{
		"s3://?endpoint=h:1":             "no bucket",
		"s3://b":                         "no endpoint",
		"s3://b?endpoint=http://h:1":     "without a scheme",
		"s3://b?endpoint=h:1&tls=maybe":  "tls",
		"s3://b?endpoint=h:1&bogus=1":    "unknown parameter \"bogus\"",
		"s3://key:secret@b?endpoint=h:1": "credentials in the URL",
		"http://b?endpoint=h:1":          "not s3",
		"s3://b/sub/dir?endpoint=h:1":    "path",
	} {
		if _, err := s3blob.ParseURL(raw); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseURL(%q) = %v, want an error containing %q", raw, err, wantErr)
		}
	}
}

func TestOpenNamesMissingBucket(t *testing.T) {
	gw := testsvc.StartS3(t)
	gw.Bucket = "no-such-bucket"
	cfg, _ := s3blob.ParseURL(gw.URL())
	cfg.AccessKey, cfg.SecretKey = gw.AccessKey, gw.SecretKey
	_, err := s3blob.Open(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("got %v", err)
	}
}

func TestOpenFailsOnUnreachableEndpoint(t *testing.T) {
	addr := testsvc.FreePort(t) // nothing listens here
	cfg, _ := s3blob.ParseURL("s3://b?endpoint=" + addr + "&tls=false")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s3blob.Open(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkVersityS3(b *testing.B) {
	blobtest.Bench(b, open(b, testsvc.StartS3(b)))
}
