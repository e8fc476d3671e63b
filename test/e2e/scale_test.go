package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/test/testsvc"
)

// The fault test's size: make test runs the reduced fleet; make bench-scale
// sets VIGIL_FAULT_DEVICES=20000 and VIGIL_FAULT_RATE for the full one.
const (
	faultDevices = 1500
	faultRate    = 500 // check-ins per second, whole fleet
	// faultWait bounds each wait for the rollout to move, plus
	// faultWaitPerDevice for each device of the fleet.
	faultWait          = 2 * time.Minute
	faultWaitPerDevice = 10 * time.Millisecond
	// faultDevicesPerSlot: each site's concurrent-install cap is the
	// fleet's size over this (60 at 1,500 devices), so the caps shape the
	// rollout at every size without stretching the full-size run to an hour.
	faultDevicesPerSlot = 25
)

var faultSites = []string{"st-mary", "north", "east", "west"}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// fleetsimRun is a vigil-fleetsim process running in the background.
type fleetsimRun struct {
	cmd                *exec.Cmd
	out                *lockedBuffer
	done               chan error
	summary, beliefsAt string
}

// simSummary is the part of fleetsim's summary the test reads.
type simSummary struct {
	Devices       int              `json:"devices"`
	Online        int              `json:"online"`
	CheckIns      int64            `json:"checkins"`
	Rate          float64          `json:"checkins_per_second"`
	P50Ms         float64          `json:"p50_ms"`
	P99Ms         float64          `json:"p99_ms"`
	EventsAcked   int64            `json:"events_acknowledged"`
	EventsPending int              `json:"events_pending"`
	Failovers     int64            `json:"failovers"`
	Errors        map[string]int64 `json:"errors"`
	States        map[string]int   `json:"states"`
	Timeline      []struct {
		T        int   `json:"t"`
		CheckIns int64 `json:"checkins"`
		Errors   int64 `json:"errors"`
	} `json:"timeline"`
}

type simBelief struct {
	Installed string            `json:"installed"`
	States    map[string]string `json:"states"`
}

func startFleetsim(t *testing.T, dir string, args ...string) *fleetsimRun {
	t.Helper()
	r := &fleetsimRun{out: &lockedBuffer{}, done: make(chan error, 1), summary: filepath.Join(dir, "summary.json"), beliefsAt: filepath.Join(dir, "beliefs.json")}
	r.cmd = exec.Command(bin("vigil-fleetsim"), append(args, "--summary", r.summary, "--beliefs", r.beliefsAt)...)
	r.cmd.Env = cleanEnv()
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		r.done <- nil
		if t.Failed() {
			t.Logf("vigil-fleetsim output (tail):\n%s", tail(r.out.String(), 4000))
		}
	})
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func readyz(url string) int {
	res, err := http.Get(url + "/readyz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// TestThreeReplicasCarryARolloutThroughCrashesAndOutages: three
// vigil-server replicas on one private PostgreSQL and one S3 gateway carry
// a 4-wave rollout with approvals at four sites for a fleet simulated by
// vigil-fleetsim (spread over the replicas), while one replica is SIGKILLed
// with a publish racing the crash, PostgreSQL restarts and the object store
// goes away. Afterwards every device's recorded state and version equal
// what the simulator believes, every acknowledged event is stored once, the
// repository verifies with a TUF client on every replica, and the audit
// chain verifies.
func TestThreeReplicasCarryARolloutThroughCrashesAndOutages(t *testing.T) {
	devices := envInt("VIGIL_FAULT_DEVICES", faultDevices)
	faultDeadline := faultWait + time.Duration(devices)*faultWaitPerDevice
	rateArg := envInt("VIGIL_FAULT_RATE", faultRate)
	pg := testsvc.StartPostgresServer(t)
	gw := testsvc.StartS3(t)
	env := []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey}
	backends := []string{"--database-url", pg.DSN, "--blob-url", gw.URL()}
	f := newRepo(t, env, backends...)
	ke := keysExample(t)
	replica := func() *server {
		return startServer(t, append(env, "VIGIL_BOOTSTRAP_TOKEN="+testToken), append([]string{"--data-dir", t.TempDir(),
			"--snapshot-key", filepath.Join(ke, "snapshot.key"), "--timestamp-key", filepath.Join(ke, "timestamp.key")}, backends...)...)
	}
	a, b, c := f.srv, replica(), replica()
	f.publish(t, "1.1.0", "rev-b")
	op := client.New(a.URL, testToken)
	ctx := context.Background()

	sim := startFleetsim(t, t.TempDir(), "--server", a.URL+","+b.URL+","+c.URL, "--token", testToken, "--devices", strconv.Itoa(devices),
		"--sites", strings.Join(faultSites, ","), "--create-sites", "--site-cap", strconv.Itoa(devices/faultDevicesPerSlot), "--care-areas", "3",
		"--rate", strconv.Itoa(rateArg), "--duration", "0", "--fail-share", "0.02", "--defer-share", "0.05", "--offline-share", "0.01",
		"--event-latency", "1s")
	waitFor(t, "fleetsim to register the fleet", faultDeadline, func() bool { return strings.Contains(sim.out.String(), "registered ") })
	// Success 50 %: which devices land in the small canary depends on the
	// rollout's random id, and a 90 % threshold over ~8 approved members
	// failed whenever one of them was among the fleet's failing or
	// offline devices (a flake CI met). The success rule has its own
	// tests; this one is about faults.
	id := f.createRollout(t, "--release", "demo-pump@1.1.0", "--select", "product=demo-pump,version<1.1.0",
		"--waves", "canary:1%,pilot:10%,broad:50%,all:100%", "--soak", "0s", "--success", "50%", "--halt-on", "failure>=20% min=20")
	for _, site := range faultSites[:3] { // west approves later
		f.approve(t, id, site, "canary", "pilot", "broad", "all")
	}
	status := func() api.RolloutStatus {
		st, err := op.RolloutStatus(ctx, id)
		if err != nil {
			return api.RolloutStatus{}
		}
		return st
	}
	totals := func(st api.RolloutStatus) (assigned, finished, committed int) {
		for _, wc := range st.Counts {
			assigned += wc.Assigned
			finished += wc.Committed + wc.RolledBack + wc.Failed
			committed += wc.Committed
		}
		return
	}
	waitFor(t, "the pilot wave to open", faultDeadline, func() bool { st := status(); return st.CurrentWave == "pilot" || st.CurrentWave == "broad" })

	// 1. SIGKILL replica b while a publish through it is in flight; the
	// fleet fails over to a and c; b comes back on the same address.
	img := image(t, f.tmp, 64<<20)
	published := make(chan int, 1)
	go func() {
		code, _ := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "publish", "--product", "demo-pump", "--version", "1.2.0",
			"--file", img, "--hardware", "rev-b", "--server", b.URL, "--keys-dir", f.keys, "--tuf-dir", filepath.Join(f.tmp, "tuf-race"))
		published <- code
	}()
	// Kill it once the publish has begun talking to it (it refreshes the
	// TUF metadata, then uploads 64 MiB, then submits the signed roles).
	waitFor(t, "the racing publish to reach the server", faultDeadline, func() bool {
		return strings.Contains(b.logs.String(), `"route":"`+api.RouteRepoMetadata+`"`) || len(published) > 0
	})
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
	b.done <- nil
	raceCode := <-published
	t.Logf("publish racing the crash: exit %d", raceCode)
	b = b.restart(t)
	// The repository is whole either way: the release is in it (the crash
	// came after the commit) or it is exactly at its last good version, and
	// the same publish through the restarted replica then succeeds.
	switch newest := f.walkRepository(t, "after the crash", a, b, c); {
	case raceCode == 0 && newest != "1.2.0":
		t.Fatalf("the publish succeeded but the repository offers %s", newest)
	case raceCode != 0 && newest != "1.1.0":
		t.Fatalf("the publish failed but the repository offers %s", newest)
	case raceCode != 0:
		if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "release", "publish", "--product", "demo-pump", "--version", "1.2.0",
			"--file", img, "--hardware", "rev-b", "--server", b.URL, "--keys-dir", f.keys, "--tuf-dir", filepath.Join(f.tmp, "tuf-race")); code != 0 {
			t.Fatalf("publishing again after the crash: exit %d\n%s", code, out)
		}
		if newest := f.walkRepository(t, "after publishing again", a, b, c); newest != "1.2.0" {
			t.Fatalf("after publishing again the repository offers %s", newest)
		}
	}

	// 2. Restart PostgreSQL: readiness goes 503, then recovers.
	waitFor(t, "the broad wave to open", faultDeadline, func() bool { st := status(); return st.CurrentWave == "broad" || st.CurrentWave == "all" })
	pg.Stop()
	waitFor(t, "readyz 503 while PostgreSQL is down", faultDeadline, func() bool { return readyz(a.URL) == 503 && readyz(c.URL) == 503 })
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "readyz 200 after PostgreSQL came back", faultDeadline, func() bool {
		return readyz(a.URL) == 200 && readyz(b.URL) == 200 && readyz(c.URL) == 200
	})

	// 3. Stop the object store: a publish fails cleanly and changes
	// nothing, downloads answer 503; then it comes back.
	gw.Stop()
	waitFor(t, "readyz 503 while S3 is down", faultDeadline, func() bool { return readyz(a.URL) == 503 })
	if code, out := f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.3.0", "--file", image(t, f.tmp, 64<<10), "--hardware", "rev-b"); code == 0 {
		t.Fatalf("a publish succeeded with the object store down:\n%s", out)
	}
	if code, _ := get(t, c.URL+"/repo/metadata/timestamp.json"); code != http.StatusServiceUnavailable {
		t.Fatalf("a download with the object store down answered %d, want 503", code)
	}
	gw.Restart(t)
	waitFor(t, "readyz 200 after S3 came back", faultDeadline, func() bool { return readyz(a.URL) == 200 && readyz(c.URL) == 200 })
	newest := f.walkRepository(t, "after the outages", a, b, c)
	if newest == "1.3.0" {
		t.Fatal("the publish refused during the S3 outage is in the repository")
	}

	// 4. West approves; the rollout finishes over every approved site.
	f.approve(t, id, "west", "canary", "pilot", "broad", "all")
	waitFor(t, "the fleet to finish the last wave", faultDeadline, func() bool {
		st := status()
		assigned, finished, _ := totals(st)
		return st.CurrentWave == "all" && assigned == finished && assigned >= devices*96/100
	})
	sim.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-sim.done; err != nil {
		sim.done <- err
		t.Fatalf("vigil-fleetsim: %v\n%s", err, tail(sim.out.String(), 4000))
	}
	sim.done <- nil
	var sum simSummary
	var beliefs map[string]simBelief
	if err := readJSON(sim.summary, &sum); err != nil {
		t.Fatal(err)
	}
	if err := readJSON(sim.beliefsAt, &beliefs); err != nil {
		t.Fatal(err)
	}
	if sum.EventsPending != 0 || sum.Failovers == 0 {
		t.Fatalf("fleetsim: %d events never acknowledged, %d failovers", sum.EventsPending, sum.Failovers)
	}

	// 5. Every device's recorded state equals what the simulator believes
	// (versions are written with buffered check-ins: poll until flushed).
	var mismatch string
	waitFor(t, "the recorded fleet to equal the simulator's beliefs", faultDeadline, func() bool {
		mismatch = compareFleet(t, op, beliefs)
		return mismatch == ""
	})
	st := status()
	_, finished, committed := totals(st)
	simCommitted, simFinished := 0, 0
	for _, bl := range beliefs {
		for _, s := range bl.States {
			if s == string(api.StateCommitted) {
				simCommitted++
			}
			if api.InstallState(s).Final() {
				simFinished++
			}
		}
	}
	if committed != simCommitted || finished != simFinished {
		t.Fatalf("rollout status: %d committed, %d finished; the simulator believes %d and %d", committed, finished, simCommitted, simFinished)
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "audit", "verify", "--server", c.URL); code != 0 {
		t.Fatalf("the audit chain does not verify after the faults:\n%s", out)
	}
	failover := recoverySeconds(sum)
	t.Logf("fleet %d devices (%d online): %d check-ins at %.0f/s, p50 %.1f ms, p99 %.1f ms; %d events; %d failovers; errors %v; rate recovered %d s after the first error",
		sum.Devices, sum.Online, sum.CheckIns, sum.Rate, sum.P50Ms, sum.P99Ms, sum.EventsAcked, sum.Failovers, sum.Errors, failover)
}

// recoverySeconds is how many seconds passed from the first second with
// errors until the check-in rate was back to half of its median.
func recoverySeconds(s simSummary) int {
	var rates []int64
	for _, sec := range s.Timeline {
		rates = append(rates, sec.CheckIns)
	}
	if len(rates) == 0 {
		return 0
	}
	sorted := slices.Clone(rates)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	for i, sec := range s.Timeline {
		if sec.Errors == 0 {
			continue
		}
		for j := i; j < len(rates); j++ {
			if rates[j] >= median/2 && s.Timeline[j].Errors == 0 {
				return j - i
			}
		}
		return len(rates) - i
	}
	return 0
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// compareFleet pages through every device and returns the first
// difference between what the server recorded and what the simulator
// believes ("" when they agree).
func compareFleet(t *testing.T, op *client.Client, beliefs map[string]simBelief) string {
	seen := 0
	for offset := 0; ; offset += 1000 {
		page, err := op.Devices(context.Background(), client.DeviceQuery{Product: "demo-pump", Prefix: "SIM-", Offset: offset, Limit: 1000})
		if err != nil {
			return err.Error()
		}
		for _, d := range page.Devices {
			bl, ok := beliefs[d.ID]
			if !ok {
				return d.ID + " is recorded but the simulator does not know it"
			}
			seen++
			if d.Installed != bl.Installed {
				return fmt.Sprintf("%s: recorded version %s, the simulator believes %s", d.ID, d.Installed, bl.Installed)
			}
			want := string(api.StateIdle)
			for _, s := range bl.States {
				want = s
			}
			if string(d.State) != want {
				return fmt.Sprintf("%s: recorded state %s, the simulator believes %s", d.ID, d.State, want)
			}
		}
		if len(page.Devices) < 1000 {
			break
		}
	}
	if seen != len(beliefs) {
		return fmt.Sprintf("%d devices recorded, the simulator has %d", seen, len(beliefs))
	}
	return ""
}

// walkRepository verifies the repository with a TUF client (vigil-agent
// check --download: root, timestamp, snapshot, targets, delegation, target
// hash) through every replica; they must agree on the newest release. It
// returns that version.
func (f *repoFixture) walkRepository(t *testing.T, when string, replicas ...*server) string {
	t.Helper()
	newest := ""
	for i, r := range replicas {
		d := newDevice(t, "rev-b", "1.0.0")
		code, out := d.check(t, f, r.URL, "--download", "-o", "json")
		var res checkJSON
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Installable == nil || res.Downloaded == "" {
			t.Fatalf("%s: the TUF client could not verify the repository through replica %d: exit %d\n%s", when, i, code, out)
		}
		if i > 0 && res.Installable.Release.Version != newest {
			t.Fatalf("%s: replica %d offers %s, another %s", when, i, res.Installable.Release.Version, newest)
		}
		newest = res.Installable.Release.Version
	}
	return newest
}
