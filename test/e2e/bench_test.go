package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// BenchDownloadSize is the image size of the download benchmark.
const BenchDownloadSize = 1 << 30

// BenchmarkAgentDownloadVersusCurl publishes a 1 GiB image and times, in
// the same run against the same server, `curl -s -o FILE URL && sync` (no
// hashing: the floor) and `vigil-agent check --download` (TUF refresh,
// streaming download, SHA-256, fsync, rename). It reports the agent's time
// as a multiple of curl's and the agent's peak RSS. Goals: ≤ 1.15× curl,
// peak RSS under 32 MiB whatever the image size.
func BenchmarkAgentDownloadVersusCurl(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl is not installed")
	}
	f := newRepo(b, nil)
	img := filepath.Join(b.TempDir(), "big.img")
	fh, _ := os.Create(img)
	io.CopyN(fh, rand.Reader, BenchDownloadSize)
	fh.Close()
	code, out := runBin(b, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "publish", "--product", "demo-pump", "--version", "1.0.0",
		"--file", img, "--hardware", "rev-b", "--server", f.srv.URL, "--keys-dir", f.keys, "--tuf-dir", f.tufDir)
	if code != 0 {
		b.Fatal(out)
	}
	os.Remove(img)
	matches, _ := filepath.Glob(filepath.Join(f.dataDir, "blobs", "targets", "demo-pump", "*"))
	url := f.srv.URL + "/repo/targets/demo-pump/" + filepath.Base(matches[0])

	var curlTotal, agentTotal time.Duration
	var peakKiB int64
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		if err := exec.Command("sh", "-c", "curl -s -o "+filepath.Join(dir, "curl.img")+" "+url+" && sync").Run(); err != nil {
			b.Fatal(err)
		}
		curlTotal += time.Since(start)
		os.Remove(filepath.Join(dir, "curl.img"))

		cmd := exec.Command(bin("vigil-agent"), "check", "--server", f.srv.URL, "--trusted-root", filepath.Join(f.keys, "trusted-root.json"),
			"--data-dir", filepath.Join(dir, "agent"), "--product", "demo-pump", "--hardware", "rev-b", "--installed-version", "0.9.0", "--download", "-o", "json")
		start = time.Now()
		outb, err := cmd.Output()
		agentTotal += time.Since(start)
		if err != nil {
			b.Fatalf("agent: %v %s", err, outb)
		}
		var res checkJSON
		if json.Unmarshal(outb, &res); res.Downloaded == "" {
			b.Fatalf("agent did not download: %s", outb)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peakKiB {
			peakKiB = ru.Maxrss
		}
		os.RemoveAll(dir)
	}
	b.ReportMetric(float64(agentTotal)/float64(curlTotal), "x-curl")
	b.ReportMetric(curlTotal.Seconds()/float64(b.N), "curl-s/op")
	b.ReportMetric(agentTotal.Seconds()/float64(b.N), "agent-s/op")
	b.ReportMetric(float64(peakKiB)/1024, "agent-peak-RSS-MiB")
}

// BenchInstallSize is the image size of the install benchmark.
const BenchInstallSize = 512 << 20

// BenchmarkAgentInstall512MiB times one whole install by `vigil-agent run
// --once` (TUF refresh, streaming download and verify, unpack of a tar into
// the inactive slot with fsyncs and re-verification, switch, health check,
// commit) and reports the agent's peak RSS. Goal: peak RSS under 32 MiB.
func BenchmarkAgentInstall512MiB(b *testing.B) {
	f := newRepo(b, nil)
	img := filepath.Join(b.TempDir(), "app.tar")
	out, _ := os.Create(img)
	tw := tar.NewWriter(out)
	for name, body := range map[string]string{"VERSION": "1.1.0\n", "healthy": "yes\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.WriteHeader(&tar.Header{Name: "payload.bin", Mode: 0o644, Size: BenchInstallSize, Typeflag: tar.TypeReg})
	io.CopyN(tw, rand.Reader, BenchInstallSize)
	tw.Close()
	out.Close()
	f.publishImage(b, "1.1.0", img)
	os.Remove(img)

	var total time.Duration
	var peakKiB int64
	for b.Loop() {
		d := newAgentDevice(b, f, f.srv.URL, "", nil)
		cmd := exec.Command(bin("vigil-agent"), "run", "--config", d.config, "--once")
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("install: %v %s", err, o)
		}
		total += time.Since(start)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peakKiB {
			peakKiB = ru.Maxrss
		}
		if s := d.status(b); s.Phase != "committed" {
			b.Fatalf("install ended %+v", s)
		}
		os.RemoveAll(d.dir)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "install-s/op")
	b.ReportMetric(float64(peakKiB)/1024, "agent-peak-RSS-MiB")
}

// BenchmarkAgentIdleRSS starts the daemon with nothing to install and
// reports its resident memory after a few polls. Goal: under 20 MiB.
func BenchmarkAgentIdleRSS(b *testing.B) {
	f := newRepo(b, nil)
	var rss float64
	for b.Loop() {
		d := newAgentDevice(b, f, f.srv.URL, "", nil)
		cmd := exec.Command(bin("vigil-agent"), "run", "--config", d.config)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second) // about three polls at poll_interval 1s
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
				rss = max(rss, kb/1024)
			}
		}
	}
	b.ReportMetric(rss, "idle-RSS-MiB")
}

// BenchCheckInDevices is the number of distinct registered devices the
// check-in load generator signs for.
const BenchCheckInDevices = 10000

// benchCheckIn measures signed check-ins per second against a running
// server with BenchCheckInDevices devices and a rollout whose canary is open,
// from a load generator on loopback (same machine: it competes for the two
// cores). Goal on SQLite: ≥ 5,000/s with p99 < 50 ms.
func benchCheckIn(b *testing.B, f *repoFixture) {
	f.publishImage(b, "1.1.0", appImage(b, f.tmp, "1.1.0", true, 0))
	f.manage(b, "PUT", api.Path(api.RouteSite, "st-mary"), map[string]any{"time_zone": "America/Chicago"})
	keys := make([]ed25519.PrivateKey, BenchCheckInDevices)
	var csv strings.Builder
	csv.WriteString("id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n")
	for i := range keys {
		_, keys[i], _ = ed25519.GenerateKey(rand.Reader)
		fmt.Fprintf(&csv, "PUMP-%05d,,demo-pump,rev-b,st-mary,icu,,%s,1.0.0\n", i, devicesig.EncodePublicKey(keys[i].Public().(ed25519.PublicKey)))
	}
	req, _ := http.NewRequest("POST", f.srv.URL+api.RouteDeviceImport, strings.NewReader(csv.String()))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 201 {
		b.Fatalf("import: %v %v", err, res)
	}
	out := f.manage(b, "POST", api.RouteRollouts, map[string]string{"release": "demo-pump@1.1.0", "waves": "canary:1%,all:100%", "soak": "24h", "halt_on": "failure>=5% min=20"})
	var ro map[string]string
	json.Unmarshal([]byte(out), &ro)
	f.manage(b, "POST", api.Path(api.RouteApprovals, ro["id"]), map[string]string{"wave": "canary", "site": "st-mary"})

	const workers = 32
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(`{"installed_version":"1.0.0","state":"idle"}`)
	var mu sync.Mutex
	var lat []time.Duration
	var failures int
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomicCounter
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				i := next.inc()
				if i >= int64(b.N) {
					break
				}
				d := int(i % BenchCheckInDevices)
				req, _ := http.NewRequest("POST", f.srv.URL+api.RouteDeviceCheckIn, bytes.NewReader(body))
				devicesig.SignRequest(req, fmt.Sprintf("PUMP-%05d", d), keys[d], body, time.Now())
				t0 := time.Now()
				res, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				mine = append(mine, time.Since(t0))
				if err != nil || res.StatusCode != 200 {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failures > 0 {
		b.Fatalf("%d of %d check-ins failed", failures, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "checkins/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) inc() int64 { return c.v.Add(1) - 1 }

func BenchmarkCheckInSQLite(b *testing.B) { benchCheckIn(b, newRepo(b, nil)) }

func BenchmarkCheckInPostgres(b *testing.B) {
	benchCheckIn(b, newRepo(b, nil, "--database-url", testsvc.PostgresDSN(b)))
}

// BenchCheckInCount is check-ins per measured run of the share benchmark:
// 24 per device, what one day-long session carries at the agent's default
// hourly poll.
const BenchCheckInCount = 24 * BenchCheckInDevices

// benchCheckInShare measures check-ins per second and p99 with
// vigil-fleetsim (32 requests in flight, no rate limit; each device opens a
// session, then its 24 check-ins use it; then again with a signature
// on every request) against vigil-server
// holding BenchCheckInDevices devices and a rollout whose canary is open,
// and in the same run against test/cmd/minhttp, the smallest net/http
// server that answers a check-in, with the same generator. It reports
// vigil-server's rate as a share of minhttp's: the machine's own ceiling
// for this generator. Goal: ≥ 50 % with p99 < 20 ms.
func benchCheckInShare(b *testing.B, f *repoFixture) {
	root, err := testsvc.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	tools := b.TempDir()
	build := exec.Command("go", "build", "-o", tools+"/", "./test/cmd/minhttp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build minhttp: %v\n%s", err, out)
	}
	f.publishImage(b, "1.1.0", appImage(b, f.tmp, "1.1.0", true, 0))
	sim := func(server string, extra ...string) simSummary {
		sum := filepath.Join(b.TempDir(), "summary.json")
		args := append([]string{"--server", server, "--token", testToken, "--devices", strconv.Itoa(BenchCheckInDevices), "--sites", "st-mary,north",
			"--rate", "1000000", "--workers", "32", "--duration", "5m", "-q", "--summary", sum}, extra...)
		code, out := runBinFor(b, 10*time.Minute, nil, "vigil-fleetsim", args...)
		var s simSummary
		if code != 0 || readJSON(sum, &s) != nil {
			b.Fatalf("vigil-fleetsim: exit %d\n%s", code, out)
		}
		return s
	}
	sim(f.srv.URL, "--create-sites", "--max-checkins", "1") // registers the fleet
	out := f.manage(b, "POST", api.RouteRollouts, map[string]string{"release": "demo-pump@1.1.0", "waves": "canary:1%,all:100%", "soak": "24h", "halt_on": "failure>=5% min=20"})
	var ro map[string]string
	json.Unmarshal([]byte(out), &ro)
	for _, site := range []string{"st-mary", "north"} {
		f.manage(b, "POST", api.Path(api.RouteApprovals, ro["id"]), map[string]string{"wave": "canary", "site": site})
	}
	addr := testsvc.FreePort(b)
	minimal := exec.Command(filepath.Join(tools, "minhttp"), "--listen", addr)
	if err := minimal.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { minimal.Process.Kill(); minimal.Wait() }()
	waitListening(b, addr)
	count := strconv.Itoa(BenchCheckInCount)
	// One check-in per device first, so the measured runs find each
	// device in the replica's cache (the first sight of a device is a
	// database read, once per device per replica).
	sim(f.srv.URL, "--register=false", "--max-checkins", strconv.Itoa(BenchCheckInDevices))
	for b.Loop() {
		base := sim("http://"+addr, "--register=false", "--max-checkins", count)
		got := sim(f.srv.URL, "--register=false", "--max-checkins", count)
		if n := got.Errors; len(n) > 0 {
			b.Fatalf("check-ins failed: %v", n)
		}
		b.ReportMetric(got.Rate, "checkins/s")
		b.ReportMetric(got.P50Ms, "p50-ms")
		b.ReportMetric(got.P99Ms, "p99-ms")
		b.ReportMetric(base.Rate, "minimal-checkins/s")
		b.ReportMetric(base.P99Ms, "minimal-p99-ms")
		b.ReportMetric(100*got.Rate/base.Rate, "share-%")
		// The same with an ed25519 signature on every request (no
		// sessions), against both servers: what sessions change.
		baseSigned := sim("http://"+addr, "--register=false", "--max-checkins", count, "--sign-every-request")
		signed := sim(f.srv.URL, "--register=false", "--max-checkins", count, "--sign-every-request")
		if n := signed.Errors; len(n) > 0 {
			b.Fatalf("signed check-ins failed: %v", n)
		}
		b.ReportMetric(signed.Rate, "signed-checkins/s")
		b.ReportMetric(signed.P99Ms, "signed-p99-ms")
		b.ReportMetric(100*signed.Rate/baseSigned.Rate, "signed-share-%")
	}
}

func waitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(serverStartTimeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("nothing listens on %s", addr)
}

func BenchmarkCheckInShareSQLite(b *testing.B) { benchCheckInShare(b, newRepo(b, nil)) }

func BenchmarkCheckInSharePostgres(b *testing.B) {
	benchCheckInShare(b, newRepo(b, nil, "--database-url", testsvc.PostgresDSN(b)))
}
