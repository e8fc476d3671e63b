package engine_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-ota/vigil/agent/internal/engine"
	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/agent/internal/journal"
	"github.com/vigil-ota/vigil/agent/internal/slot"
	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tuftest"
)

// crash is what the failpoint hook panics with: the engine stops at that
// point as a killed process would (the journal on disk is what it wrote).
type crash struct{ at string }

// device is one simulated device: a dir-slot backend and a data dir that
// outlive each engine ("process").
type device struct {
	t       *testing.T
	repo    *tuftest.Repo
	slots   string
	data    string
	healthy bool
	armed   string // the failpoint to crash at (once)
}

// publishRelease serves a signed repository holding demo-pump 1.1.0 (a tar
// image), and returns it.
func publishRelease(t *testing.T, custom func(*release.Custom)) *tuftest.Repo {
	r := tuftest.New(t)
	r.Delegate(metadata.TARGETS, "demo-pump", []string{"demo-pump/*"}, true)
	var img bytes.Buffer
	tw := tar.NewWriter(&img)
	for name, body := range map[string]string{"VERSION": "1.1.0\n", "bin/app": strings.Repeat("x", 4096)} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	c := release.Custom{Product: "demo-pump", Version: "1.1.0", Hardware: []string{"rev-b"}, Kind: release.KindFull, Severity: release.SeveritySecurity, Cycle: release.CycleRegular}
	if custom != nil {
		custom(&c)
	}
	raw, _ := json.Marshal(c)
	r.AddTarget("demo-pump", "demo-pump/demo-pump-"+c.Version+".tar", img.Bytes(), raw)
	r.Publish()
	return r
}

func newDevice(t *testing.T, r *tuftest.Repo, healthy bool) *device {
	d := &device{t: t, repo: r, slots: filepath.Join(t.TempDir(), "slots"), data: filepath.Join(t.TempDir(), "data"), healthy: healthy}
	os.MkdirAll(filepath.Join(d.slots, "a"), 0o755)
	os.WriteFile(filepath.Join(d.slots, "a", "VERSION"), []byte("1.0.0\n"), 0o644)
	if err := (&slot.Dir{Root: d.slots}).Provision(journal.Release{Target: "factory", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	return d
}

// engine starts a new "process" of the agent on the device.
func (d *device) engine() *engine.Engine {
	hook := func(name string) {
		if name == d.armed {
			d.armed = ""
			panic(crash{name})
		}
	}
	e, err := engine.New(engine.Config{
		DeviceID: "PUMP-1", Product: "demo-pump", Hardware: "rev-b", DataDir: d.data,
		Server: d.repo.URL(), TrustedRoot: d.repo.TrustedRoot(),
		Slots:     &slot.Dir{Root: d.slots, Failpoint: hook},
		Failpoint: hook,
		Health: func(_ context.Context, s, version string) error {
			if !d.healthy {
				return errors.New("self-test failed")
			}
			return nil
		},
		Now: func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return e
}

// step runs fn, and reports the failpoint it crashed at ("" if none).
func step(fn func() error) (crashed string, err error) {
	defer func() {
		if p := recover(); p != nil {
			c, ok := p.(crash)
			if !ok {
				panic(p)
			}
			crashed = c.at
		}
	}()
	return "", fn()
}

// runToEnd starts processes until the install ends (committed, rolled
// back or failed), as a device that keeps restarting would.
func (d *device) runToEnd(ctx context.Context) journal.State {
	for range 8 {
		e := d.engine()
		if c, err := step(func() error { return e.Recover(ctx) }); c != "" || err != nil {
			d.t.Fatalf("recover: crashed at %q, %v", c, err)
		}
		if c, err := step(func() error { return e.Check(ctx) }); c != "" || err != nil {
			d.t.Fatalf("check: crashed at %q, %v", c, err)
		}
		switch st := e.State(); st.Phase {
		case journal.Committed, journal.RolledBack, journal.Failed:
			return st
		}
	}
	d.t.Fatal("the install did not end in 8 restarts")
	return journal.State{}
}

// The engine's in-process phase table: a crash at every failpoint of an
// install (and of a rollback), then restarts, always end with exactly one
// consistent slot active — the new release after a healthy check, the old
// one otherwise — and the terminal event reported once.
func TestACrashAtEveryPhaseRecoversToOneConsistentSlot(t *testing.T) {
	r := publishRelease(t, nil)
	points := []string{"download-mid", "downloaded", "staging", "unpack-mid", "staged", "switched-before-journal",
		"switched", "health-check", "healthy", "marked-good"}
	for _, healthy := range []bool{true, false} {
		cases := points
		want, wantSlot, wantVersion := journal.Committed, slot.B, "1.1.0"
		if !healthy {
			cases = append(append([]string{}, points[:8]...), "rolling-back") // no "healthy" or "marked-good"
			want, wantSlot, wantVersion = journal.RolledBack, slot.A, "1.0.0"
		}
		for _, at := range cases {
			t.Run(fmt.Sprintf("healthy=%v/crash-at=%s", healthy, at), func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, r, healthy)
				d.armed = at
				e := d.engine()
				crashed, err := step(func() error { return e.Check(ctx) })
				if crashed != at {
					t.Fatalf("did not reach failpoint %s (crashed at %q, err %v, phase %s)", at, crashed, err, e.State().Phase)
				}
				st := d.runToEnd(ctx)
				if st.Phase != want {
					t.Fatalf("ended %s (%s), want %s", st.Phase, st.Reason, want)
				}
				checkOneConsistentSlot(t, d, wantSlot, wantVersion)
				checkTerminalEventOnce(t, d, want)
			})
		}
	}
}

func checkOneConsistentSlot(t *testing.T, d *device, wantSlot, wantVersion string) {
	t.Helper()
	b := &slot.Dir{Root: d.slots}
	active, err := b.Active(context.Background())
	if err != nil || active != wantSlot {
		t.Fatalf("active slot %q (%v), want %s", active, err, wantSlot)
	}
	rel, err := b.Installed(context.Background(), active)
	if err != nil || rel.Version != wantVersion {
		t.Fatalf("active slot %s holds %+v (%v), want version %s", active, rel, err, wantVersion)
	}
	onDisk, _ := os.ReadFile(filepath.Join(d.slots, "current", "VERSION"))
	if strings.TrimSpace(string(onDisk)) != wantVersion {
		t.Fatalf("the running files say %q, the slot record %s", onDisk, wantVersion)
	}
	good, err := os.ReadFile(filepath.Join(d.slots, "good"))
	if err == nil && strings.TrimSpace(string(good)) != wantSlot {
		t.Fatalf("slot marked good: %q, want %s", good, wantSlot)
	}
	if _, err := os.Stat(filepath.Join(d.slots, active+".new")); err == nil {
		t.Fatal("a half-written slot is left next to the active one")
	}
}

func checkTerminalEventOnce(t *testing.T, d *device, want api.InstallState) {
	t.Helper()
	q, err := events.Open(d.data)
	if err != nil {
		t.Fatal(err)
	}
	evs, _, _ := q.Pending()
	n := 0
	for _, e := range evs {
		if e.State == want {
			n++
		}
		if e.State.Final() && e.State != want {
			t.Fatalf("event %s besides the expected %s", e.State, want)
		}
	}
	if n != 1 {
		t.Fatalf("%d %s events queued, want 1", n, want)
	}
}

// A delta target (kind the agent does not install) assigned to the device
// is refused with the check named, and never written to a slot.
func TestAnAssignedDeltaTargetIsRefusedNotWrittenToASlot(t *testing.T) {
	r := publishRelease(t, func(c *release.Custom) {
		c.Kind, c.DeltaBaseSHA256, c.ResultSHA256, c.ResultLength = release.KindDelta, strings.Repeat("a", 64), strings.Repeat("b", 64), 10
	})
	d := newDevice(t, r, true)
	e, err := engine.New(engine.Config{DeviceID: "PUMP-1", Product: "demo-pump", Hardware: "rev-b", DataDir: d.data,
		Server: r.URL(), TrustedRoot: r.TrustedRoot(), Slots: &slot.Dir{Root: d.slots},
		CheckIn: func(context.Context, api.CheckIn) (*api.Assignment, error) {
			return &api.Assignment{Target: "demo-pump/demo-pump-1.1.0.tar", Version: "1.1.0"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e.State(); st.Phase != journal.Failed || !strings.Contains(st.Reason, release.CheckKind) {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	checkOneConsistentSlot(t, d, slot.A, "1.0.0")
}
