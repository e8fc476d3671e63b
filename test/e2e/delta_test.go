package e2e

import (
	"archive/tar"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// deltaImage writes an uncompressed tar image (a delta works on the
// image's bytes; a compressed archive changes everywhere): VERSION,
// healthy, and a 2 MiB payload that differs between versions only by edit.
func deltaImage(t testing.TB, dir, version, edit string) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	payload := make([]byte, 2<<20)
	for i := range payload {
		payload[i] = byte(rng.IntN(32))
	}
	copy(payload[1<<20:], edit)
	p := filepath.Join(dir, "app-"+version+".tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		body []byte
	}{{"VERSION", []byte(version + "\n")}, {"healthy", []byte("yes\n")}, {"payload.bin", payload}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		tw.Write(e.body)
	}
	tw.Close()
	f.Close()
	return p
}

// A release engineer publishes a patch with a delta from the release the
// fleet runs; a device rebuilds the patch from it (its events say so), the
// repository serves the delta instead of the full image, and rollout status
// and the metrics count full and delta bytes apart.
func TestAPatchReachesADeviceAsADeltaAndTheServerCountsTheBytes(t *testing.T) {
	f := newRepo(t, nil)
	f.publishImage(t, "1.1.0", deltaImage(t, f.tmp, "1.1.0", "one"))
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.1.0" {
		t.Fatalf("installing 1.1.0: %d\n%s", code, out)
	}

	out := f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.2.0", "--file", deltaImage(t, f.tmp, "1.2.0", "two: the security fix"),
		"--hardware", "rev-b", "--delta-from", "1.1.0", "-o", "json")
	var res struct {
		Deltas []struct {
			Target      string  `json:"target"`
			BaseVersion string  `json:"base_version"`
			Share       float64 `json:"share_of_image"`
		} `json:"deltas"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Deltas) != 1 || res.Deltas[0].BaseVersion != "1.1.0" || res.Deltas[0].Share > 0.05 {
		t.Fatalf("publish with a delta: %v\n%s", err, out)
	}
	// A base that is not published is named.
	if code, out := f.vigil(t, "release", "publish", "--product", "demo-pump", "--version", "1.3.0", "--file", deltaImage(t, f.tmp, "1.3.0", "three"),
		"--hardware", "rev-b", "--delta-from", "0.9.0"); code == 0 || !strings.Contains(out, "no full image of demo-pump 0.9.0") {
		t.Fatalf("a delta from an unpublished version: %d %s", code, out)
	}
	// The release list shows the delta under its release, not as one.
	var list []struct {
		Version string   `json:"version"`
		Deltas  []string `json:"deltas"`
	}
	listed := f.vigilOK(t, "release", "list", "-o", "json")
	json.Unmarshal([]byte(listed), &list)
	n := 0
	for _, r := range list {
		if r.Version == "1.2.0" {
			n++
			if len(r.Deltas) != 1 || r.Deltas[0] != res.Deltas[0].Target {
				t.Fatalf("release list: 1.2.0 lists deltas %v", r.Deltas)
			}
		}
	}
	if n != 1 {
		t.Fatalf("release list shows 1.2.0 %d times:\n%s", n, listed)
	}

	ro := f.manage(t, "POST", api.RouteRollouts, map[string]string{"release": "demo-pump@1.2.0", "waves": "all:100%"})
	var created struct{ ID string }
	json.Unmarshal([]byte(ro), &created)
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.2.0" {
		t.Fatalf("installing 1.2.0: %d\n%s", code, out)
	}
	rebuilt := false
	for _, e := range serverEvents(t, f, d.id) {
		if e.Version == "1.2.0" && e.State == api.StateVerified && e.Reason == "rebuilt from delta "+res.Deltas[0].Target {
			rebuilt = true
		}
	}
	if !rebuilt {
		t.Fatalf("no verified event says the image was rebuilt from the delta: %s", states(serverEvents(t, f, d.id)))
	}

	// Counted by every replica into the database every few seconds: wait
	// for the flush, then compare with what was served.
	deadline := time.Now().Add(30 * time.Second)
	var st api.RolloutStatus
	for {
		json.Unmarshal([]byte(f.manage(t, "GET", api.Path(api.RouteRollout, created.ID), nil)), &st)
		if st.Served != nil && st.Served.DeltaBytes > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Served == nil || st.Served.DeltaRequests != 1 || st.Served.FullBytes != 0 || st.Served.DeltaBytes == 0 || st.Served.DeltaBytes > 100<<10 {
		t.Fatalf("served for 1.2.0: %+v", st.Served)
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "rollout", "status", created.ID, "--server", f.srv.URL); code != 0 ||
		!strings.Contains(out, "served: full images 0 B in 0 requests, deltas") {
		t.Fatalf("rollout status: %d %s", code, out)
	}
	res2, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	metrics, _ := io.ReadAll(res2.Body)
	for _, kind := range []string{"full", "delta"} {
		m := regexp.MustCompile(`vigil_target_bytes_served_total\{kind="` + kind + `"\} (\S+)`).FindSubmatch(metrics)
		if m == nil {
			t.Fatalf("no %s bytes in the metrics", kind)
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v <= 0 {
			t.Fatalf("%s bytes served: %s", kind, m[1])
		}
	}
}

// TestCrashAtEveryDeltaStepEndsConsistent kills the real agent (SIGKILL) at
// each step that a delta install adds, checks the device right after,
// restarts it, and checks it ends committed on the new release, rebuilt
// from the delta, with events that tell the truth.
func TestCrashAtEveryDeltaStepEndsConsistent(t *testing.T) {
	for _, point := range []string{"delta-downloaded", "delta-rebuild-mid", "delta-rebuilt"} {
		t.Run(point, func(t *testing.T) {
			f := newRepo(t, nil)
			f.publishImage(t, "1.1.0", deltaImage(t, f.tmp, "1.1.0", "one"))
			d := newAgentDevice(t, f, f.srv.URL, "", nil)
			if code, out := d.once(t); code != 0 {
				t.Fatalf("installing 1.1.0: %d\n%s", code, out)
			}
			f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.2.0", "--file", deltaImage(t, f.tmp, "1.2.0", "two"),
				"--hardware", "rev-b", "--delta-from-last", "1")
			if code, out := d.once(t, "VIGIL_AGENT_FAILPOINT="+point); code != -1 {
				t.Fatalf("the agent was not killed at %s (exit %d):\n%s", point, code, out)
			}
			if s := consistent(t, d); s.Phase != "downloading" || s.Installed != "1.1.0" {
				t.Fatalf("after a crash at %s: %+v", point, s)
			}
			if code, out := d.once(t); code != 0 {
				t.Fatalf("restart after a crash at %s: %d\n%s", point, code, out)
			}
			s := d.status(t)
			running, _ := os.ReadFile(filepath.Join(d.slots, "current", "VERSION"))
			if s.Phase != "committed" || s.Installed != "1.2.0" || string(running) != "1.2.0\n" {
				t.Fatalf("crash at %s: ended %+v, running %q", point, s, running)
			}
			var evs []api.DeviceEvent
			for _, e := range serverEvents(t, f, d.id) {
				if e.Version == "1.2.0" {
					evs = append(evs, e)
				}
			}
			truthful(t, states(evs))
			rebuilt := 0
			for _, e := range evs {
				if e.Version == "1.2.0" && e.State == api.StateVerified && strings.HasPrefix(e.Reason, "rebuilt from delta ") {
					rebuilt++
				}
			}
			if rebuilt != 1 {
				t.Fatalf("crash at %s: %d verified events rebuilt from the delta; events %s", point, rebuilt, states(evs))
			}
		})
	}
}

// A device provisioned with its factory image keeps it as the base of the
// first delta: the first security patch after manufacturing is a delta too.
func TestTheFirstPatchAfterProvisioningWithTheFactoryImageIsADelta(t *testing.T) {
	f := newRepo(t, nil)
	factory := deltaImage(t, f.tmp, "1.0.0", "factory")
	f.publishImage(t, "1.0.0", factory)
	d := newAgentDevice(t, f, f.srv.URL, "", nil)
	if code, out := runBin(t, nil, "vigil-agent", "provision", "--config", d.config, "--version", "1.0.0", "--image", factory); code != 0 {
		t.Fatalf("provision --image: %d %s", code, out)
	}
	f.vigilOK(t, "release", "publish", "--product", "demo-pump", "--version", "1.1.0", "--file", deltaImage(t, f.tmp, "1.1.0", "patched"),
		"--hardware", "rev-b", "--delta-from", "1.0.0")
	if code, out := d.once(t); code != 0 || d.status(t).Installed != "1.1.0" {
		t.Fatalf("installing 1.1.0: %d\n%s", code, out)
	}
	for _, e := range serverEvents(t, f, d.id) {
		if e.State == api.StateVerified && strings.HasPrefix(e.Reason, "rebuilt from delta ") {
			return
		}
	}
	t.Fatalf("the first patch was not rebuilt from a delta: %s", states(serverEvents(t, f, d.id)))
}
