// Package e2e starts the real binaries (vigil-server, vigil, vigil-agent) and
// drives them as operators and devices would. The binaries come from
// $VIGIL_BIN_DIR (the Makefile sets it to ./bin) or are built once into a
// temporary directory.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/test/testsvc"
)

// Timeouts, named so a slow machine is easy to tune.
const (
	serverStartTimeout = 30 * time.Second
	serverStopTimeout  = 30 * time.Second
	commandTimeout     = 60 * time.Second
)

var binDir string

func TestMain(m *testing.M) {
	binDir = os.Getenv("VIGIL_BIN_DIR")
	cleanup := func() {}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "vigil-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		root, err := testsvc.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./server/cmd/vigil-server", "./agent/cmd/vigil-agent", "./tools/cmd/vigil", "./tools/cmd/vigil-fleetsim")
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building binaries:", err)
			os.Exit(1)
		}
		binDir = dir
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// server is a running vigil-server process.
type server struct {
	URL  string
	addr string
	env  []string
	args []string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan error
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer = testsvc.LockedBuffer

// startServer runs vigil-server with args and env and waits for /healthz.
func startServer(t testing.TB, env []string, args ...string) *server {
	t.Helper()
	return startServerAt(t, testsvc.FreePort(t), env, args...)
}

// restart starts the same server again (same address, settings and data)
// after it stopped or was killed.
func (s *server) restart(t testing.TB) *server {
	t.Helper()
	return startServerAt(t, s.addr, s.env, s.args...)
}

// startServerAt is startServer on a given loopback address.
func startServerAt(t testing.TB, addr string, env []string, args ...string) *server {
	t.Helper()
	s := &server{URL: "http://" + addr, addr: addr, env: env, args: args, logs: &lockedBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin("vigil-server"), append([]string{"--listen", addr}, args...)...)
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("vigil-server output:\n%s", s.logs.String())
		}
	})
	deadline := time.Now().Add(serverStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("vigil-server exited during start-up: %v\n%s", err, s.logs.String())
		default:
		}
		if res, err := http.Get(s.URL + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("vigil-server did not answer /healthz within %s\n%s", serverStartTimeout, s.logs.String())
	return nil
}

// stop sends SIGTERM and returns the exit error.
func (s *server) stop(t testing.TB) error {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(serverStopTimeout):
		t.Fatalf("vigil-server did not stop within %s of SIGTERM", serverStopTimeout)
		return nil
	}
}

// cleanEnv drops VIGIL_* variables of the test environment, so only what a
// test sets reaches the server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIGIL_") {
			env = append(env, kv)
		}
	}
	return env
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// runBin runs a binary to completion and returns its exit code and output.
func runBin(t testing.TB, env []string, name string, args ...string) (int, string) {
	t.Helper()
	return runBinFor(t, commandTimeout, env, name, args...)
}

// runBinFor is runBin with its own time limit.
func runBinFor(t testing.TB, limit time.Duration, env []string, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(name), args...)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return 0, string(out)
}

func checkProbes(t testing.TB, s *server) {
	t.Helper()
	code, body := get(t, s.URL+"/healthz")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, body = get(t, s.URL+"/readyz")
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if ready.Checks["database"] != "ok" || ready.Checks["blobs"] != "ok" {
		t.Fatalf("/readyz checks: %v", ready.Checks)
	}
	code, body = get(t, s.URL+"/metrics")
	if code != 200 || !strings.Contains(body, `vigil_http_requests_total{method="GET",route="/readyz",status="200"} 1`) ||
		!strings.Contains(body, "vigil_http_request_duration_seconds_bucket") {
		t.Fatalf("/metrics lacks request counts: %d\n%.2000s", code, body)
	}
}

func TestEmbeddedDefaultServesProbesAndStopsCleanly(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "var")
	s := startServer(t, nil, "--data-dir", dataDir)
	checkProbes(t, s)
	code, body := get(t, s.URL+"/no/such/route")
	if code != 404 || !strings.Contains(body, `"request_id"`) {
		t.Fatalf("unknown route: %d %s", code, body)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.logs)
	}
	for _, p := range []string{"vigil.db", "blobs"} {
		if _, err := os.Stat(filepath.Join(dataDir, p)); err != nil {
			t.Errorf("embedded default did not create %s: %v", p, err)
		}
	}
	if !strings.Contains(s.logs.String(), `"msg":"vigil-server stopped"`) {
		t.Errorf("no final stopped line after SIGTERM:\n%s", s.logs)
	}
	if !strings.Contains(s.logs.String(), `"msg":"vigil-server listening"`) {
		t.Errorf("production logs are not JSON with a constant message:\n%s", s.logs)
	}
}

func TestPostgresAndS3ServeProbesAndReportAnOutage(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	gw := testsvc.StartS3(t)
	env := []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey}
	s := startServer(t, env, "--data-dir", t.TempDir(), "--database-url", dsn, "--blob-url", gw.URL())
	checkProbes(t, s)
	if !strings.Contains(s.logs.String(), `"database":"postgres"`) || !strings.Contains(s.logs.String(), `"blobs":"s3"`) {
		t.Fatalf("start-up log does not name the backends:\n%s", s.logs)
	}
	gw.Stop()
	code, body := get(t, s.URL+"/readyz")
	if code != 503 || !strings.Contains(body, `"blobs":"unavailable"`) || !strings.Contains(body, `"database":"ok"`) {
		t.Fatalf("/readyz with S3 down: %d %s", code, body)
	}
	if code, _ := get(t, s.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz must stay up while a dependency is down: %d", code)
	}
}

func TestBadConfigurationExitsNonZeroNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("listen: 127.0.0.1:0\ndatabase: sqlite\n"), 0o600)
	notADir := filepath.Join(dir, "file")
	os.WriteFile(notADir, nil, 0o600)
	closed := testsvc.FreePort(t)
	// Online keys readable by others (finding 13): refused like ssh does.
	openKey := filepath.Join(dir, "snapshot.key")
	b, _ := os.ReadFile(filepath.Join(keysExample(t), "snapshot.key"))
	os.WriteFile(openKey, b, 0o644)
	os.Chmod(openKey, 0o644)
	tsKey := filepath.Join(keysExample(t), "timestamp.key")

	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"unknown key", nil, []string{"--config", badYAML}, []string{`unknown setting "database"`, "bad.yaml"}},
		{"malformed DSN", nil, []string{"--database-url", "postgres://vigil@db:notaport/x"}, []string{"setting database_url", "malformed PostgreSQL URL"}},
		{"unreachable S3", []string{"VIGIL_STARTUP_TIMEOUT=5s"}, []string{"--blob-url", "s3://patches?endpoint=" + closed + "&tls=false"}, []string{"setting blob_url", "not reachable"}},
		{"unwritable data dir", nil, []string{"--data-dir", filepath.Join(notADir, "var")}, []string{"setting data_dir", "cannot create"}},
		{"bad listen from env", []string{"VIGIL_LISTEN=localhost"}, nil, []string{"setting listen", "VIGIL_LISTEN"}},
		{"unknown flag", nil, []string{"--no-such-flag"}, []string{"unknown flag"}},
		{"online key readable by others", nil, []string{"--snapshot-key", openKey, "--timestamp-key", tsKey}, []string{"setting snapshot_key", "too open", "chmod 600"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--data-dir", filepath.Join(t.TempDir(), "var")}, c.args...)
			code, out := runBin(t, c.env, "vigil-server", args...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2\n%s", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestConfigPrintRedactsSecrets(t *testing.T) {
	code, out := runBin(t, []string{"VIGIL_S3_SECRET_KEY=topsecret", "VIGIL_S3_ACCESS_KEY=AKIAEXAMPLE"}, "vigil-server", "config", "print",
		"--database-url", "postgres://vigil:hunter2@127.0.0.1/vigil", "--blob-url", "s3://b?endpoint=127.0.0.1:9&tls=false", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "topsecret") {
		t.Fatalf("config print leaks a secret:\n%s", out)
	}
	var doc struct {
		Settings map[string]string `json:"settings"`
		Sources  map[string]string `json:"sources"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Settings["s3_access_key"] != "AKIAEXAMPLE" || doc.Sources["s3_secret_key"] != "env" || doc.Sources["database_url"] != "flag" {
		t.Fatalf("config print: %+v", doc)
	}
}

func TestBinariesReportTheStampedVersion(t *testing.T) {
	for _, b := range []string{"vigil-server", "vigil", "vigil-agent"} {
		code, out := runBin(t, nil, b, "version")
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("%s version: %d %q", b, code, out)
		}
	}
}
