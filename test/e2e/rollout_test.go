package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/test/testsvc"
)

const fleetAgents = 20

// fleetDevice is one agent of the rollout test.
type fleetDevice struct {
	*agentDevice
	site string
}

// newFleet imports fleetAgents devices (half at st-mary, half at north)
// with `vigil device import` and gives each an agent that installs what its
// rollout assigns.
func newFleet(t *testing.T, f *repoFixture) []*fleetDevice { return newFleetOf(t, f, fleetAgents) }

// newFleetOf is newFleet with n devices.
func newFleetOf(t *testing.T, f *repoFixture, n int) []*fleetDevice {
	t.Helper()
	env := []string{"VIGIL_TOKEN=" + testToken}
	for _, site := range []string{"st-mary", "north"} {
		if code, out := runBin(t, env, "vigil", "site", "put", site, "--time-zone", "America/Chicago", "--care-area", "icu",
			"--site-cap", "10", "--server", f.srv.URL); code != 0 {
			t.Fatal(out)
		}
	}
	csv := "id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n"
	var devs []*fleetDevice
	for i := range n {
		site := []string{"st-mary", "north"}[i%2]
		d := &agentDevice{id: fmt.Sprintf("PUMP-%04d", i), dir: t.TempDir()}
		d.slots, d.data = filepath.Join(d.dir, "slots"), filepath.Join(d.dir, "data")
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		keyPath, _, err := keyfile.Write(filepath.Join(d.dir, "key"), "device", priv, false)
		if err != nil {
			t.Fatal(err)
		}
		csv += fmt.Sprintf("%s,00812345%04d,demo-pump,rev-b,%s,icu,ward-3,%s,1.0.0\n", d.id, i, site, devicesig.EncodePublicKey(priv.Public().(ed25519.PublicKey)))
		cfg := map[string]any{
			"server": f.srv.URL, "device_id": d.id, "device_key": keyPath, "trusted_root": filepath.Join(f.keys, "trusted-root.json"),
			"data_dir": d.data, "product": "demo-pump", "hardware": "rev-b",
			"slots":          map[string]any{"backend": "dir", "dir": d.slots},
			"health_check":   map[string]any{"command": healthCommand(d.slots), "timeout": "20s"},
			"install_policy": "assigned",
		}
		b, _ := json.Marshal(cfg)
		d.config = filepath.Join(d.dir, "agent.yaml")
		os.WriteFile(d.config, b, 0o600)
		os.MkdirAll(filepath.Join(d.slots, "a"), 0o755)
		os.WriteFile(filepath.Join(d.slots, "a", "VERSION"), []byte("1.0.0\n"), 0o644)
		os.WriteFile(filepath.Join(d.slots, "a", "healthy"), []byte("yes\n"), 0o644)
		if code, out := runBin(t, nil, "vigil-agent", "provision", "--config", d.config, "--version", "1.0.0"); code != 0 {
			t.Fatal(out)
		}
		devs = append(devs, &fleetDevice{agentDevice: d, site: site})
	}
	csvPath := filepath.Join(t.TempDir(), "devices.csv")
	os.WriteFile(csvPath, []byte(csv), 0o600)
	if code, out := runBin(t, env, "vigil", "device", "import", csvPath, "--server", f.srv.URL); code != 0 || !strings.Contains(out, fmt.Sprintf("%d devices registered", n)) {
		t.Fatalf("import: %d %s", code, out)
	}
	return devs
}

// round runs every agent once, eight at a time.
func round(t *testing.T, devs []*fleetDevice) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.once(t)
		}()
	}
	wg.Wait()
}

// maxRounds bounds the check-in rounds a rollout may take in these tests.
const maxRounds = 10

// committedAt counts the committed devices of a site over every wave.
func committedAt(st rolloutStatus, site string) int {
	n := 0
	for _, c := range st.Counts {
		if c.Site == site {
			n += c.Committed
		}
	}
	return n
}

type rolloutStatus struct {
	ID          string   `json:"id"`
	State       string   `json:"state"`
	CurrentWave string   `json:"current_wave"`
	HaltReason  string   `json:"halt_reason"`
	WaitingFor  []string `json:"waiting_for"`
	Counts      []struct {
		Wave, Site                            string
		Eligible, Assigned, Committed, Failed int
		RolledBack                            int `json:"rolled_back"`
		Approved                              bool
	} `json:"counts"`
}

func (f *repoFixture) rolloutStatus(t *testing.T, id string) rolloutStatus {
	t.Helper()
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "rollout", "status", id, "--server", f.srv.URL, "-o", "json")
	var st rolloutStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %d %s", code, out)
	}
	return st
}

func (f *repoFixture) createRollout(t *testing.T, args ...string) string {
	t.Helper()
	code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", append([]string{"rollout", "create", "--server", f.srv.URL, "-o", "json"}, args...)...)
	var res map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("rollout create: %d %s", code, out)
	}
	return res["id"]
}

func (f *repoFixture) approve(t *testing.T, id, site string, waves ...string) {
	t.Helper()
	for _, w := range waves {
		if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "approve", id, "--wave", w, "--site", site, "--comment", "CHG-1234", "--server", f.srv.URL); code != 0 {
			t.Fatal(out)
		}
	}
}

func testRolloutAcrossTwoSites(t *testing.T, f *repoFixture) {
	f.publishImage(t, "1.1.0", appImage(t, f.tmp, "1.1.0", true, 0))
	f.publishImage(t, "1.2.0", appImage(t, f.tmp, "1.2.0", false, 0))
	devs := newFleet(t, f)

	good := f.createRollout(t, "--release", "demo-pump@1.1.0", "--select", "product=demo-pump,hardware=rev-b,version<1.1.0",
		"--waves", "canary:10%,pilot:50%,all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=3")
	f.approve(t, good, "st-mary", "canary", "pilot", "all") // north withholds its approval
	// Three waves need at most three rounds once approved; rounds run
	// until the rollout gets there, bounded, whatever the wave draw.
	var st rolloutStatus
	for range maxRounds {
		round(t, devs)
		if st = f.rolloutStatus(t, good); st.CurrentWave == "all" && committedAt(st, "st-mary") == fleetAgents/2 {
			break
		}
	}
	if st.State != "active" || st.CurrentWave != "all" || committedAt(st, "st-mary") != fleetAgents/2 {
		t.Fatalf("good rollout after %d rounds: %+v", maxRounds, st)
	}
	if !slices.Equal(st.WaitingFor, []string{"north"}) {
		t.Fatalf("the open wave waits for %v, want [north]", st.WaitingFor)
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "rollout", "status", good, "--server", f.srv.URL); code != 0 ||
		!strings.Contains(out, "waiting for the approval of: north (open wave all)") {
		t.Fatalf("rollout status does not say which site it waits for: %s", out)
	}
	for _, d := range devs {
		want := map[string]string{"st-mary": "1.1.0", "north": "1.0.0"}[d.site]
		if got := d.status(t).Installed; got != want {
			t.Fatalf("%s at %s runs %s, want %s", d.id, d.site, got, want)
		}
	}

	// The bad release: its canary rolls back and the rollout halts by itself.
	var bad string
	for attempt := 0; ; attempt++ {
		bad = f.createRollout(t, "--release", "demo-pump@1.2.0", "--select", "product=demo-pump,hardware=rev-b,sites=st-mary",
			"--waves", "canary:30%,all:100%", "--soak", "0s", "--success", "90%", "--halt-on", "failure>=50% min=1")
		canary := 0
		for _, c := range f.rolloutStatus(t, bad).Counts {
			if c.Wave == "canary" {
				canary += c.Eligible
			}
		}
		if canary > 0 && canary < fleetAgents/2 {
			break
		}
		// Abort a draw whose canary is empty or everything, and draw again.
		runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "rollout", "abort", bad, "--yes", "--server", f.srv.URL)
		if attempt > 20 {
			t.Fatal("no usable canary draw")
		}
	}
	f.approve(t, bad, "st-mary", "canary", "all")
	for range maxRounds {
		round(t, devs)
		if st = f.rolloutStatus(t, bad); st.State != "active" {
			break
		}
	}
	if st.State != "halted" || !strings.Contains(st.HaltReason, "halted automatically") {
		t.Fatalf("bad rollout did not halt: %+v", st)
	}
	rolledBack, allWave := 0, 0
	for _, c := range st.Counts {
		rolledBack += c.RolledBack
		if c.Wave == "all" {
			allWave += c.Assigned
		}
	}
	if rolledBack == 0 || allWave != 0 {
		t.Fatalf("halt after the canary: %d rolled back, %d assigned in wave all: %+v", rolledBack, allWave, st)
	}
	for _, d := range devs {
		if got := d.status(t).Installed; got == "1.2.0" {
			t.Fatalf("%s runs the bad release", d.id)
		}
	}
	if code, out := runBin(t, []string{"VIGIL_TOKEN=" + testToken}, "vigil", "audit", "verify", "--server", f.srv.URL); code != 0 {
		t.Fatalf("audit chain after the rollouts: %s", out)
	}
}

func TestRolloutAcrossTwoSitesWithApprovalsAndAutoHaltOnSQLite(t *testing.T) {
	testRolloutAcrossTwoSites(t, newRepo(t, nil))
}

func TestRolloutAcrossTwoSitesWithApprovalsAndAutoHaltOnPostgres(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	gw := testsvc.StartS3(t)
	testRolloutAcrossTwoSites(t, newRepo(t, []string{"VIGIL_S3_ACCESS_KEY=" + gw.AccessKey, "VIGIL_S3_SECRET_KEY=" + gw.SecretKey},
		"--database-url", dsn, "--blob-url", gw.URL()))
}
