// Package testsvc gives tests the real services they run against: a fresh
// PostgreSQL database and a Versity S3 gateway on a free loopback port.
//
// A test that cannot get its service skips with a line starting
// "VIGIL-SERVICE-SKIPPED", so `make test` can list every skipped real-service
// test loudly. With VIGIL_REQUIRE_SERVICES=1 (set by .ci/run) it fails
// instead: in CI a skipped real-service test is a failure, not a pass. A
// test that got its service logs "VIGIL-SERVICE-USED", which the test report
// counts.
package testsvc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Environment variables that steer the helpers.
const (
	EnvPostgresDSN     = "VIGIL_TEST_POSTGRES_DSN"
	EnvRequireServices = "VIGIL_REQUIRE_SERVICES"
	EnvVersityGW       = "VIGIL_VERSITYGW"
)

// Timeouts for bringing services up, named so a slow CI box is easy to tune.
const (
	postgresConnectTimeout = 5 * time.Second
	gatewayStartTimeout    = 20 * time.Second
)

// Markers written to the test log; test/cmd/servicereport greps for them.
const (
	MarkerUsed    = "VIGIL-SERVICE-USED"
	MarkerSkipped = "VIGIL-SERVICE-SKIPPED"
)

func unavailable(t testing.TB, service, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatalf("%s is required (%s=1) but unavailable: %s", service, EnvRequireServices, reason)
	}
	t.Skipf("%s %s: %s", MarkerSkipped, service, reason)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// PostgresDSN creates a new, empty database on the server named by
// VIGIL_TEST_POSTGRES_DSN, drops it when the test ends, and returns a DSN
// for it. Parallel tests and packages never share a database.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgresDSN)
	if base == "" {
		unavailable(t, "postgres", "%s is not set", EnvPostgresDSN)
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresConnectTimeout)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		unavailable(t, "postgres", "cannot connect to %s: %v", redact(base), err)
	}
	defer admin.Close(context.Background())
	name := randomName("vigil_t_")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), postgresConnectTimeout)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", EnvPostgresDSN, err)
	}
	u.Path = "/" + name
	t.Logf("%s postgres", MarkerUsed)
	return u.String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// S3 is a running Versity S3 gateway with one empty bucket.
type S3 struct {
	Endpoint  string // 127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	// Dir is the gateway's posix root; the bucket is Dir/Bucket.
	Dir string
	// Stop kills the gateway now (tests of an outage); it also runs when
	// the test ends.
	Stop func()
}

// URL is the blob URL the server's configuration takes for this bucket.
func (s S3) URL() string {
	return "s3://" + s.Bucket + "?endpoint=" + s.Endpoint + "&tls=false"
}

// Client returns a minio client for the gateway.
func (s S3) Client(t testing.TB) *minio.Client {
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: false, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// VersityGWPath finds the gateway binary: $VIGIL_VERSITYGW, then the
// Makefile's .tools/bin, then PATH.
func VersityGWPath() (string, error) {
	if p := os.Getenv(EnvVersityGW); p != "" {
		return p, nil
	}
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("versitygw")
}

// ModuleRoot is the directory holding go.mod, found from this source file.
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("no caller information")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", file)
		}
		dir = parent
	}
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartS3 starts a Versity S3 gateway with its posix backend in a temporary
// directory, creates a bucket, and stops the gateway when the test ends.
func StartS3(t testing.TB) S3 {
	t.Helper()
	bin, err := VersityGWPath()
	if err != nil {
		unavailable(t, "s3", "versitygw not found (run `make tools`): %v", err)
	}
	s := S3{
		Dir:       t.TempDir(),
		Bucket:    randomName("vigil-t-"),
		AccessKey: "vigiltestaccess",
		SecretKey: "vigiltestsecret" + randomName(""),
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.Endpoint = FreePort(t)
		if s.Stop, lastErr = startGateway(bin, s); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start versitygw: %v", lastErr)
	}
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), gatewayStartTimeout)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	t.Logf("%s s3", MarkerUsed)
	return s
}

// Restart starts the gateway again on the same port and directory after
// Stop (an object-store outage that ends); the bucket and objects are kept.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	bin, err := VersityGWPath()
	if err != nil {
		t.Fatal(err)
	}
	if s.Stop, err = startGateway(bin, *s); err != nil {
		t.Fatalf("restart versitygw: %v", err)
	}
	t.Cleanup(s.Stop)
}

func startGateway(bin string, s S3) (stop func(), err error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, "--port", s.Endpoint, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(gatewayStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("versitygw exited: %v: %s", err, strings.TrimSpace(out.String()))
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Endpoint, 200*time.Millisecond); err == nil {
			c.Close()
			var once sync.Once
			return func() {
				once.Do(func() {
					cmd.Process.Kill()
					<-exited
				})
			}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return nil, fmt.Errorf("versitygw did not listen on %s within %s: %s", s.Endpoint, gatewayStartTimeout, out.String())
}

// EnvChromium names the browser the console tests drive (default: the
// first of chromium, chromium-browser, google-chrome on PATH).
const EnvChromium = "VIGIL_CHROMIUM"

// Chromium returns the path of a Chromium to drive headless; without one
// the test skips loudly, or fails under VIGIL_REQUIRE_SERVICES=1 (CI
// installs Debian's chromium package).
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		t.Logf("%s chromium", MarkerUsed)
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			t.Logf("%s chromium", MarkerUsed)
			return p
		}
	}
	unavailable(t, "chromium", "no chromium on PATH (apt-get install chromium, or set %s)", EnvChromium)
	return ""
}
