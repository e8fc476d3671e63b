package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/internal/keyfile"
)

// appImage writes a tar.gz application image: VERSION, and `healthy`
// holding yes or no (the health check reads it from the running slot).
func appImage(t testing.TB, dir, version string, healthy bool, extra int) string {
	t.Helper()
	p := filepath.Join(dir, "app-"+version+".tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	h := "yes"
	if !healthy {
		h = "no"
	}
	files := map[string]string{"VERSION": version + "\n", "healthy": h + "\n"}
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	if extra > 0 {
		tw.WriteHeader(&tar.Header{Name: "payload.bin", Mode: 0o644, Size: int64(extra), Typeflag: tar.TypeReg})
		io.CopyN(tw, rand.Reader, int64(extra)) // random: the image stays as large as asked
	}
	tw.Close()
	gz.Close()
	f.Close()
	return p
}

// publishImage publishes a file as a release of demo-pump for rev-b.
func (f *repoFixture) publishImage(t testing.TB, version, file string) {
	t.Helper()
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", version, "--file", file, "--hardware", "rev-b")
}

// agentDevice is a provisioned device with dir slots and a config file.
type agentDevice struct {
	id, dir, slots, data, config string
	mark                         string // scratch dir for test hooks
}

// healthCommand checks the running slot; hooks may be prepended.
func healthCommand(slots string) string {
	return `grep -qx yes "` + slots + `/current/healthy"`
}

// manage sends a management request with the bootstrap token.
func (f *repoFixture) manage(t testing.TB, method, path string, body any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, out)
	}
	return string(out)
}

// registerDevice makes a device key and registers the device at site.
func (f *repoFixture) registerDevice(t testing.TB, id, site, careArea, dir string) string {
	t.Helper()
	f.manage(t, "PUT", api.Path(api.RouteSite, site), map[string]any{"time_zone": "America/Chicago"})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyPath, _, err := keyfile.Write(dir, "device", priv, false)
	if err != nil {
		t.Fatal(err)
	}
	f.manage(t, "POST", api.RouteDevices, []map[string]any{{"id": id, "product": "demo-pump", "hardware": "rev-b", "site": site,
		"care_area": careArea, "public_key": devicesig.EncodePublicKey(priv.Public().(ed25519.PublicKey)), "installed_version": "1.0.0"}})
	return keyPath
}

func newAgentDevice(t testing.TB, f *repoFixture, server, health string, extra map[string]string) *agentDevice {
	t.Helper()
	d := &agentDevice{id: fmt.Sprintf("pump-%d", time.Now().UnixNano()%1e9), dir: t.TempDir()}
	site := "test-site"
	if s, ok := extra["site"]; ok {
		site = s
		delete(extra, "site")
	}
	keyPath := f.registerDevice(t, d.id, site, "ward-1", filepath.Join(d.dir, "key"))
	d.slots, d.data, d.mark = filepath.Join(d.dir, "slots"), filepath.Join(d.dir, "data"), filepath.Join(d.dir, "mark")
	os.MkdirAll(d.mark, 0o700)
	if health == "" {
		health = healthCommand(d.slots)
	}
	cfg := map[string]any{
		"server": server, "device_id": d.id, "trusted_root": filepath.Join(f.keys, "trusted-root.json"),
		"data_dir": d.data, "product": "demo-pump", "hardware": "rev-b",
		"slots":         map[string]any{"backend": "dir", "dir": d.slots},
		"health_check":  map[string]any{"command": health, "timeout": "20s"},
		"poll_interval": "1s", "poll_jitter": "0s", "defer_retry": "1s", "event_interval": "1s", "max_boot_attempts": 3,
		"device_key": keyPath, "install_policy": "newest",
	}
	for k, v := range extra {
		if section, key, nested := strings.Cut(k, "."); nested { // interlock.file, download.idle_timeout, …
			m, _ := cfg[section].(map[string]any)
			if m == nil {
				m = map[string]any{}
			}
			m[key] = v
			cfg[section] = m
			continue
		}
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg) // JSON is YAML
	d.config = filepath.Join(d.dir, "agent.yaml")
	os.WriteFile(d.config, b, 0o600)
	os.MkdirAll(filepath.Join(d.slots, "a"), 0o755)
	os.WriteFile(filepath.Join(d.slots, "a", "VERSION"), []byte("1.0.0\n"), 0o644)
	os.WriteFile(filepath.Join(d.slots, "a", "healthy"), []byte("yes\n"), 0o644)
	if code, out := runBin(t, nil, "vigil-agent", "provision", "--config", d.config, "--version", "1.0.0"); code != 0 {
		t.Fatalf("provision: %s", out)
	}
	return d
}

// once runs `vigil-agent run --once` with extra environment.
func (d *agentDevice) once(t testing.TB, env ...string) (int, string) {
	t.Helper()
	return runBin(t, env, "vigil-agent", "run", "--config", d.config, "--once")
}

type agentStatus struct {
	Phase     string            `json:"phase"`
	Reason    string            `json:"reason"`
	Active    string            `json:"active_slot"`
	Installed string            `json:"installed_version"`
	Slots     map[string]string `json:"slots"`
	Pending   int               `json:"events_pending"`
	Events    []api.DeviceEvent `json:"events"`
}

func (d *agentDevice) status(t testing.TB) agentStatus {
	t.Helper()
	code, out := runBin(t, nil, "vigil-agent", "status", "--config", d.config, "-o", "json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, out)
	}
	var s agentStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status output %q: %v", out, err)
	}
	return s
}

// serverEvents reads what the server stored for the device.
func serverEvents(t testing.TB, f *repoFixture, device string) []api.DeviceEvent {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+api.Path(api.RouteDeviceEventList, device), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ Events []api.DeviceEvent }
	json.NewDecoder(res.Body).Decode(&body)
	return body.Events
}

func states(evs []api.DeviceEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.State))
	}
	return strings.Join(s, ",")
}

func TestAgentInstallsAGoodReleaseAndCommits(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, out := d.once(t); code != 0 {
		t.Fatalf("agent: %d\n%s", code, out)
	}
	s := d.status(t)
	if s.Phase != "committed" || s.Active != "b" || s.Installed != "1.1.0" || s.Slots["a"] != "1.0.0" {
		t.Fatalf("after install: %+v", s)
	}
	got, _ := os.ReadFile(filepath.Join(d.slots, "current", "VERSION"))
	if string(got) != "1.1.0\n" {
		t.Fatalf("current/VERSION = %q", got)
	}
	want := "downloading,verified,staging,staged,switching,switched,committing,committed"
	if got := states(serverEvents(t, f, d.id)); got != want {
		t.Fatalf("server events %s, want %s", got, want)
	}
	if s.Pending != 0 {
		t.Fatalf("%d events left undelivered", s.Pending)
	}
	// Nothing newer: a second run changes nothing.
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.1.0" {
		t.Fatalf("second run: %d %s", code, out)
	}
}

func TestAgentRollsBackAFailingHealthCheckAndReportsWhy(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", false, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	d.once(t)
	s := d.status(t)
	if s.Phase != "rolled_back" || s.Active != "a" || s.Installed != "1.0.0" || !strings.Contains(s.Reason, "health check failed") {
		t.Fatalf("after a failing health check: %+v", s)
	}
	evs := serverEvents(t, f, d.id)
	last := evs[len(evs)-1]
	if last.State != "rolled_back" || !strings.Contains(last.Reason, "health check failed") {
		t.Fatalf("server's last event %+v", last)
	}
	// The bad release is not tried again.
	d.once(t)
	if s := d.status(t); s.Phase != "rolled_back" || s.Active != "a" {
		t.Fatalf("retried a rolled-back release: %+v", s)
	}
	if n := len(serverEvents(t, f, d.id)); n != len(evs) {
		t.Fatalf("a second run produced %d more events", n-len(evs))
	}
}

func TestAgentDefersWhileInClinicalUseThenInstalls(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	busy := filepath.Join(t.TempDir(), "in-use")
	os.WriteFile(busy, []byte("infusion running, bed 4\n"), 0o644)
	d := newAgentDevice(t, f, f.srv.URL, "", map[string]string{"interlock.file": busy})
	d.once(t)
	s := d.status(t)
	if s.Phase != "deferred" || s.Active != "a" || !strings.Contains(s.Reason, "infusion running") {
		t.Fatalf("while busy: %+v", s)
	}
	if m, _ := filepath.Glob(filepath.Join(d.data, "downloads", "*demo-pump-1.1.0.tar.gz")); len(m) != 1 {
		t.Fatalf("the verified download was not kept while deferred: %v", m)
	}
	d.once(t) // still busy: no new event
	os.Remove(busy)
	d.once(t)
	if s := d.status(t); s.Phase != "committed" || s.Installed != "1.1.0" {
		t.Fatalf("after the device became free: %+v", s)
	}
	evs := serverEvents(t, f, d.id)
	if got := states(evs); !strings.HasPrefix(got, "downloading,verified,deferred,staging") || strings.Count(got, "deferred") != 1 {
		t.Fatalf("events %s", got)
	}
	for _, e := range evs {
		if e.State == "failed" || e.State == "rolled_back" {
			t.Fatalf("a deferral was reported as %s", e.State)
		}
	}
}

// flakyMirror serves a copy of the repository; the first download of a
// target stops halfway, as when the server goes away mid-download.
type flakyMirror struct {
	*mirror
	mu     sync.Mutex
	cut    bool
	ranges []string
	// stall: the first download sends half and then nothing, holding
	// the connection open (a slow-retrieval attack) instead of closing it.
	stall bool
}

func newFlakyMirror(t testing.TB, f *repoFixture) *flakyMirror {
	return newMirrorThat(t, f, false)
}

func newMirrorThat(t testing.TB, f *repoFixture, stall bool) *flakyMirror {
	m := &flakyMirror{mirror: &mirror{dir: filepath.Join(t.TempDir(), "mirror")}, stall: stall}
	copyDir(t, filepath.Join(f.dataDir, "blobs"), filepath.Join(m.dir, "repo"))
	done := make(chan struct{})
	files := http.FileServer(http.Dir(m.dir))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/repo/targets/") {
			files.ServeHTTP(w, r)
			return
		}
		m.mu.Lock()
		m.ranges = append(m.ranges, r.Header.Get("Range"))
		first := !m.cut
		m.cut = true
		m.mu.Unlock()
		if first {
			b, _ := os.ReadFile(filepath.Join(m.dir, filepath.FromSlash(r.URL.Path)))
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:len(b)/2])
			if m.stall {
				w.(http.Flusher).Flush()
				select { // hold the connection, send nothing
				case <-r.Context().Done():
				case <-done:
				}
			}
			panic(http.ErrAbortHandler)
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(done); hs.Close() })
	m.URL = hs.URL
	return m
}

// Slow retrieval: a mirror that stalls mid-download used to hold the
// agent (and, in daemon mode, its check-ins) forever. The attempt now ends
// after download.idle_timeout; the next poll resumes the partial file.
func TestAgentCutsOffAStalledDownloadAndResumesIt(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 4<<20))
	m := newMirrorThat(t, f, true)
	d := newAgentDevice(t, f, m.URL, "", map[string]string{"download.idle_timeout": "2s"})
	start := time.Now()
	code, out := d.once(t)
	if code == 0 || !strings.Contains(out, "slow retrieval") {
		t.Fatalf("the stalled download: exit %d after %s: %s", code, time.Since(start), out)
	}
	if s := d.status(t); s.Phase != "downloading" || s.Active != "a" {
		t.Fatalf("after the stall: %+v", s)
	}
	d.once(t)
	if s := d.status(t); s.Phase != "committed" || s.Installed != "1.1.0" {
		t.Fatalf("after resuming: %+v", s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ranges) != 2 || m.ranges[1] == "" || m.ranges[1] == "bytes=0-" {
		t.Fatalf("the second download did not resume: %q", m.ranges)
	}
}

func TestAgentResumesADownloadCutByTheServerGoingAway(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 4<<20))
	m := newFlakyMirror(t, f)
	d := newAgentDevice(t, f, m.URL, "", nil)
	if code, _ := d.once(t); code == 0 {
		t.Fatal("the cut download reported success")
	}
	if s := d.status(t); s.Phase != "downloading" || s.Active != "a" {
		t.Fatalf("after the cut: %+v", s)
	}
	partial, _ := filepath.Glob(filepath.Join(d.data, "downloads", "*.unverified"))
	if len(partial) != 1 {
		t.Fatalf("no partial download kept: %v", partial)
	}
	d.once(t)
	if s := d.status(t); s.Phase != "committed" || s.Installed != "1.1.0" {
		t.Fatalf("after resuming: %+v", s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.ranges) != 2 || !strings.HasPrefix(m.ranges[1], "bytes=") || m.ranges[1] == "bytes=0-" {
		t.Fatalf("the second download did not resume with a Range request: %q", m.ranges)
	}
	// The mirror has no event endpoint: events wait on the device, and
	// reach the server once it is reachable again.
	if s := d.status(t); s.Pending == 0 {
		t.Fatal("events were lost instead of queued while the server was away")
	}
	b, _ := os.ReadFile(d.config)
	os.WriteFile(d.config, []byte(strings.Replace(string(b), m.URL, f.srv.URL, 1)), 0o600)
	d.once(t)
	if s := d.status(t); s.Pending != 0 {
		t.Fatalf("%d events still queued", s.Pending)
	}
	if got := states(serverEvents(t, f, d.id)); !strings.HasSuffix(got, "committing,committed") || !strings.HasPrefix(got, "downloading,verified") {
		t.Fatalf("server events after delivery: %s", got)
	}
}

func TestAgentDaemonPollsInstallsAndStopsOnSIGTERM(t *testing.T) {
	f := newRepo(t, nil)
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	cmd := exec.Command(bin("vigil-agent"), "run", "--config", d.config)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	time.Sleep(1500 * time.Millisecond)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if evs := serverEvents(t, f, d.id); len(evs) > 0 && evs[len(evs)-1].State == "committed" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := states(serverEvents(t, f, d.id)); !strings.HasSuffix(got, "committed") {
		t.Fatalf("the daemon did not install and report: %s\n%s", got, out.String())
	}
	// A second agent on the same device refuses to start.
	if code, o := d.once(t); code == 0 || !strings.Contains(o, "another vigil-agent") {
		t.Fatalf("second agent: %d %s", code, o)
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop")
	}
}

func TestAgentTakesASignedRecallButNoOtherDowngrade(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	d.once(t)
	if s := d.status(t); s.Installed != "1.1.0" {
		t.Fatalf("setup: %+v", s)
	}
	// An older release that is not a recall of 1.1.0: ignored.
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.5", "--file", appImage(t, f.tmp, "1.0.5", true, 0), "--hardware", "rev-b")
	d.once(t)
	if s := d.status(t); s.Installed != "1.1.0" || s.Phase != "committed" {
		t.Fatalf("a plain downgrade was installed: %+v", s)
	}
	code, out := runBin(t, nil, "vigil-agent", "check", "--server", f.srv.URL, "--trusted-root", filepath.Join(f.keys, "trusted-root.json"),
		"--data-dir", t.TempDir(), "--product", "demo-pump", "--hardware", "rev-b", "--installed-version", "1.1.0", "--target", "demo-pump/demo-pump-1.0.5.tar.gz")
	expectRefused(t, code, out, "downgrade")
	// A recall signed for 1.1.0 replaces it.
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.0.6", "--file", appImage(t, f.tmp, "1.0.6", true, 0),
		"--hardware", "rev-b", "--downgrade-from", "1.1.0", "--severity", "critical")
	d.once(t)
	if s := d.status(t); s.Installed != "1.0.6" || s.Phase != "committed" {
		t.Fatalf("the signed recall was not installed: %+v", s)
	}
}

// Events the server refuses (here: the device was decommissioned, so its
// key no longer counts) stay queued, and `status` says why instead of
// leaving the operator to guess.
func TestAgentStatusSaysWhyTheServerRefusesItsEvents(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	f.manage(t, "POST", api.Path(api.RouteDecommission, d.id), nil)
	d.once(t)
	code, out := runBin(t, nil, "vigil-agent", "status", "--config", d.config)
	if code != 0 || !strings.Contains(out, "the server refuses them (HTTP 401 "+api.CodeDeviceUnauthenticated) || !strings.Contains(out, "is this device registered") {
		t.Fatalf("status: %d %s", code, out)
	}
	if s := d.status(t); s.Pending == 0 {
		t.Fatalf("refused events were dropped: %+v", s)
	}
}
