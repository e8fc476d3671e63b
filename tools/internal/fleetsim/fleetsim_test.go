package fleetsim

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
)

func validOptions() Options {
	return Options{Servers: []string{"http://127.0.0.1:8080"}, Devices: 100, Prefix: "SIM", Product: "demo-pump", Hardware: "rev-b",
		Installed: "1.0.0", Sites: []string{"st-mary"}, Seed: "s", Rate: 10}
}

func TestOnlyLoopbackServersAreAccepted(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "https://[2001:db8::1]:443", "http://0.0.0.0:80",
		"http://127.0.0.1.example.com", "ftp://127.0.0.1", "127.0.0.1:8080", "http://"} {
		o := validOptions()
		o.Servers = []string{u}
		if _, err := New(o); err == nil {
			t.Errorf("server %q was accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9/", "http://127.3.4.5:80"} {
		o := validOptions()
		o.Servers = []string{u}
		if _, err := New(o); err != nil {
			t.Errorf("loopback server %q was refused: %v", u, err)
		}
	}
}

func TestBadSizesAndSharesAreRefusedNamingTheFlag(t *testing.T) {
	cases := map[string]func(*Options){
		"--devices":       func(o *Options) { o.Devices = 0 },
		"--devices ":      func(o *Options) { o.Devices = MaxDevices + 1 },
		"--rate":          func(o *Options) { o.Rate = -1 },
		"--defer-share":   func(o *Options) { o.Behaviour.DeferShare = 1.5 },
		"--offline-share": func(o *Options) { o.Behaviour.OfflineShare = -0.1 },
		"add up":          func(o *Options) { o.Behaviour.FailShare, o.Behaviour.DeferShare = 0.6, 0.6 },
		"--sites":         func(o *Options) { o.Sites = nil },
		"--prefix":        func(o *Options) { o.Prefix = "" },
	}
	for want, mutate := range cases {
		o := validOptions()
		mutate(&o)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
			t.Errorf("%s: %v", want, err)
		}
	}
}

func TestTheSameSeedIsTheSameFleet(t *testing.T) {
	o := validOptions()
	o.Devices = 2000
	o.Behaviour = Behaviour{DeferShare: 0.1, FailShare: 0.1, OfflineShare: 0.1}
	a, _ := New(o)
	b, _ := New(o)
	o.Seed = "other"
	c, _ := New(o)
	counts := map[string]int{}
	for i, d := range a.devices {
		if !d.key.Equal(b.devices[i].key) || d.fails != b.devices[i].fails || d.defers != b.devices[i].defers || d.offline != b.devices[i].offline {
			t.Fatalf("device %d differs between two runs with one seed", i)
		}
		if d.key.Equal(c.devices[i].key) {
			t.Fatalf("device %d has the same key under another seed", i)
		}
		switch {
		case d.offline:
			counts["offline"]++
		case d.fails:
			counts["fails"]++
		case d.defers:
			counts["defers"]++
		}
	}
	for k, n := range counts { // 10% each of 2,000, within a wide margin
		if n < 120 || n > 280 {
			t.Errorf("%s: %d devices of 2000, want about 200", k, n)
		}
	}
	if len(a.online) != 2000-counts["offline"] {
		t.Fatalf("%d online", len(a.online))
	}
}

func TestOnlyUnreachableServersAnd5xxFailOver(t *testing.T) {
	if !retryable(errors.New("cannot reach: connection refused")) || !retryable(&api.Error{Status: 503}) {
		t.Fatal("an unreachable replica or a 503 must fail over")
	}
	if retryable(&api.Error{Status: 409, Code: "conflict"}) || retryable(&api.Error{Status: 401}) {
		t.Fatal("a refusal (4xx) is the same on every replica: it must not fail over")
	}
}

func TestQuantilesOfTheLatencyHistogram(t *testing.T) {
	h := make([]int64, histBuckets)
	h[int(time.Millisecond/histBucket)] = 98 // 98 requests of about 1 ms
	h[int(100*time.Millisecond/histBucket)] = 2
	if q := quantile(h, 0.5); q < time.Millisecond || q > 2*time.Millisecond {
		t.Fatalf("p50 %s", q)
	}
	if q := quantile(h, 0.99); q < 100*time.Millisecond {
		t.Fatalf("p99 %s", q)
	}
	if quantile(make([]int64, histBuckets), 0.99) != 0 {
		t.Fatal("an empty histogram has no p99")
	}
}
