package e2e

import (
	"archive/tar"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
