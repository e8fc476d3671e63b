// Package fleetsim simulates a fleet of devices against one or more
// vigil-server replicas, for load and fault tests (vigil-fleetsim).
//
// Each simulated device has its own ed25519 key (derived from the run's
// seed and the device id, so a later run with the same seed is the same
// fleet), is registered through the real CSV import API, and speaks the
// agent's signed protocol through the same client (api/client: check-ins and
// event batches signed per request with a fresh nonce). Nothing is
// installed: a device that gets an assignment reports downloading,
// installing and an outcome after the behaviour model's latency, and
// believes what the server acknowledged.
//
// Behaviour: a share of the devices defers its first assignment (in
// clinical use), a share fails the health check (rolled back), a share is
// offline (never checks in). Which device does what is a hash of the seed
// and its id, so tests never depend on a random draw.
//
// Failover: device i prefers server i mod n; a request that cannot reach
// its server or gets a 5xx is sent to the next one in the same turn. Event
// ids are fixed per (device, target, state), so a batch retried on another
// replica after a lost answer is counted once by the server.
//
// Safety: it refuses server URLs that are not loopback addresses (a load
// generator must never be pointed at a real fleet by mistake), and it is
// bounded in devices (MaxDevices), time (Options.Duration) and check-ins
// (Options.MaxCheckIns).
//
// Concurrency: Options.Workers goroutines take devices round-robin under a
// token-bucket rate; a device's turn holds its own lock (one request of a
// device at a time, like a real agent); counters are atomic; the latency
// histograms have their own lock.
package fleetsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/client"
	"github.com/vigil-ota/vigil/api/devicesig"
)

// Limits and defaults, with their units.
const (
	// MaxDevices bounds one simulated fleet.
	MaxDevices = 2_000_000
	// ImportBatchRows is devices per CSV import request (the server takes
	// at most 100,000 per import).
	ImportBatchRows = 20_000
	// DefaultRate is check-ins per second across the fleet.
	DefaultRate = 500.0
	// DefaultWorkers is concurrent requests in flight.
	DefaultWorkers = 32
	// DefaultEventLatency is how long after an assignment a device reports
	// its outcome (download, install, health check).
	DefaultEventLatency = 2 * time.Second
	// DrainTimeout bounds the final delivery of unacknowledged events.
	DrainTimeout = 60 * time.Second
	// histBucket and histBuckets: latency histogram of 50 µs buckets up to
	// 5 s; slower requests land in the last bucket.
	histBucket  = 50 * time.Microsecond
	histBuckets = 100_000
)

// Behaviour is the device model; shares are fractions of the fleet.
type Behaviour struct {
	DeferShare   float64       // defer their first assignment once (clinical use)
	FailShare    float64       // fail the health check: rolled_back
	OfflineShare float64       // never check in
	EventLatency time.Duration // from assignment to outcome
}

// Options configure a run.
type Options struct {
	Servers     []string // base URLs of the replicas, loopback only
	Token       string   // operator token for registration (site and device import)
	Devices     int
	Prefix      string // device id prefix: PREFIX-000001…
	Product     string
	Hardware    string
	Installed   string   // version the devices start on
	Sites       []string // devices spread round-robin over these sites
	CareAreas   int      // care areas per site: ward-0 … (0: none)
	CreateSites bool     // create the sites (UTC, no windows) with SiteCap
	SiteCap     int
	Register    bool // import the devices first (false: they exist from an earlier run with the same seed)
	Seed        string
	Rate        float64 // check-ins per second, whole fleet
	Workers     int     // concurrent requests
	// SignEveryRequest: no device sessions, an ed25519 signature per request.
	SignEveryRequest bool
	Duration         time.Duration // stop after this long (0: until ctx ends)
	MaxCheckIns      int64         // stop after this many check-ins (0: no bound)
	Behaviour        Behaviour
	// Progress receives one line per ProgressEvery (nil: none).
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Second is one second of the run, for rates and failover times.
type Second struct {
	T        int     `json:"t"`
	CheckIns int64   `json:"checkins"`
	Errors   int64   `json:"errors"`
	P99Ms    float64 `json:"p99_ms"`
}

// Belief is what a device believes the server recorded about it.
type Belief struct {
	Installed string            `json:"installed"`
	States    map[string]string `json:"states,omitempty"` // target → last acknowledged state
}

// Summary is a run's outcome.
type Summary struct {
	Devices       int               `json:"devices"`
	Online        int               `json:"online"`
	RegisterSecs  float64           `json:"register_seconds,omitempty"`
	Seconds       float64           `json:"seconds"`
	CheckIns      int64             `json:"checkins"`
	Rate          float64           `json:"checkins_per_second"`
	P50Ms         float64           `json:"p50_ms"`
	P99Ms         float64           `json:"p99_ms"`
	Assignments   int64             `json:"assignments"`
	EventsAcked   int64             `json:"events_acknowledged"`
	EventsPending int               `json:"events_pending"`
	Failovers     int64             `json:"failovers"`
	Errors        map[string]int64  `json:"errors"`
	States        map[string]int    `json:"states"`    // last acknowledged state → devices
	Installed     map[string]int    `json:"installed"` // version → devices
	Timeline      []Second          `json:"timeline"`
	Beliefs       map[string]Belief `json:"-"` // by device id
}

type event struct {
	api.DeviceEvent
	due time.Time
}

type device struct {
	mu        sync.Mutex
	id        string
	key       ed25519.PrivateKey
	site      string
	careArea  string
	installed string
	pref      int
	offline   bool
	defers    bool
	fails     bool
	deferred  map[string]bool   // targets deferred once
	acked     map[string]string // target → last acknowledged state
	pending   []event
	clients   []*client.Client // one per server
}

// Sim is one simulated fleet.
type Sim struct {
	opt     Options
	devices []*device
	online  []*device

	checkIns, assignments, acked, failovers atomic.Int64
	errMu                                   sync.Mutex
	errs                                    map[string]int64

	histMu        sync.Mutex
	total, window []int64
	windowErrors  int64
}

// New checks the options and derives the fleet (keys, sites, behaviour).
func New(opt Options) (*Sim, error) {
	if len(opt.Servers) == 0 {
		return nil, errors.New("no server URL: give at least one --server")
	}
	for i, s := range opt.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("server %q is not an http(s) URL", s)
		}
		if !loopback(u.Hostname()) {
			return nil, fmt.Errorf("server %q is not a loopback address: vigil-fleetsim only talks to servers on this machine", s)
		}
		opt.Servers[i] = strings.TrimRight(s, "/")
	}
	switch {
	case opt.Devices <= 0 || opt.Devices > MaxDevices:
		return nil, fmt.Errorf("--devices %d is outside 1…%d", opt.Devices, MaxDevices)
	case len(opt.Sites) == 0:
		return nil, errors.New("no site: give --sites")
	case opt.Product == "" || opt.Hardware == "" || opt.Installed == "" || opt.Prefix == "":
		return nil, errors.New("--product, --hardware, --installed and --prefix are required")
	case opt.Rate <= 0:
		return nil, fmt.Errorf("--rate %g is not positive", opt.Rate)
	}
	b := opt.Behaviour
	for name, v := range map[string]float64{"--defer-share": b.DeferShare, "--fail-share": b.FailShare, "--offline-share": b.OfflineShare} {
		if v < 0 || v > 1 {
			return nil, fmt.Errorf("%s %g is not a fraction between 0 and 1", name, v)
		}
	}
	if b.DeferShare+b.FailShare+b.OfflineShare > 1 {
		return nil, errors.New("the defer, fail and offline shares add up to more than 1")
	}
	if opt.Workers <= 0 {
		opt.Workers = DefaultWorkers
	}
	if opt.ProgressEvery <= 0 {
		opt.ProgressEvery = time.Second
	}
	// One transport for the whole fleet: a real fleet's devices each have
	// their own connection, but the server's work per request is the same.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = opt.Workers
	hc := &http.Client{Transport: tr, Timeout: client.DeviceRequestTimeout}
	s := &Sim{opt: opt, errs: map[string]int64{}, total: make([]int64, histBuckets), window: make([]int64, histBuckets)}
	for i := range opt.Devices {
		id := fmt.Sprintf("%s-%06d", opt.Prefix, i)
		h := sha256.Sum256([]byte(opt.Seed + "\n" + id))
		d := &device{id: id, key: ed25519.NewKeyFromSeed(h[:]), site: opt.Sites[i%len(opt.Sites)], installed: opt.Installed,
			pref: i % len(opt.Servers), deferred: map[string]bool{}, acked: map[string]string{}}
		if opt.CareAreas > 0 {
			d.careArea = fmt.Sprintf("ward-%d", (i/len(opt.Sites))%opt.CareAreas)
		}
		// The behaviour draw: a fraction in [0,1) from the hash.
		f := float64(binary.BigEndian.Uint64(h[24:])>>11) / (1 << 53)
		switch {
		case f < b.OfflineShare:
			d.offline = true
		case f < b.OfflineShare+b.FailShare:
			d.fails = true
		case f < b.OfflineShare+b.FailShare+b.DeferShare:
			d.defers = true
		}
		// One session per device, shared by its clients of every replica.
		first := client.NewDevice(opt.Servers[0], id, d.key)
		first.HTTP = hc
		if opt.SignEveryRequest {
			first.SignEveryRequest()
		}
		for _, srv := range opt.Servers {
			d.clients = append(d.clients, first.WithBase(srv))
		}
		s.devices = append(s.devices, d)
		if !d.offline {
			s.online = append(s.online, d)
		}
	}
	return s, nil
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Register creates the sites (if asked) and imports the devices in CSV
// batches through the first server that answers.
func (s *Sim) Register(ctx context.Context) error {
	op := s.operator()
	if s.opt.CreateSites {
		for _, site := range s.opt.Sites {
			in := api.Site{Name: site, TimeZone: "UTC", SiteCap: s.opt.SiteCap}
			for a := range s.opt.CareAreas {
				in.CareAreas = append(in.CareAreas, fmt.Sprintf("ward-%d", a))
			}
			if _, err := op.PutSite(ctx, in); err != nil {
				return fmt.Errorf("create site %s: %w", site, err)
			}
		}
	}
	for start := 0; start < len(s.devices); start += ImportBatchRows {
		var b bytes.Buffer
		b.WriteString("id,udi_di,product,hardware,site,care_area,tags,public_key,installed_version\n")
		for _, d := range s.devices[start:min(start+ImportBatchRows, len(s.devices))] {
			fmt.Fprintf(&b, "%s,,%s,%s,%s,%s,fleetsim,%s,%s\n", d.id, s.opt.Product, s.opt.Hardware, d.site, d.careArea,
				devicesig.EncodePublicKey(d.key.Public().(ed25519.PublicKey)), s.opt.Installed)
		}
		if _, err := op.ImportDevices(ctx, b.Bytes()); err != nil {
			return fmt.Errorf("import devices %d…: %w", start, err)
		}
	}
	return nil
}

func (s *Sim) operator() *client.Client { return client.New(s.opt.Servers[0], s.opt.Token) }

// Run drives the fleet until Duration, MaxCheckIns or ctx ends, then
// delivers the events still unacknowledged (within DrainTimeout) and
// returns the summary.
func (s *Sim) Run(ctx context.Context) (*Summary, error) {
	if len(s.online) == 0 {
		return nil, errors.New("every device is offline: lower --offline-share")
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.opt.Duration > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, s.opt.Duration)
		defer cancel()
	}
	start := time.Now()
	lim := rate.NewLimiter(rate.Limit(s.opt.Rate), max(1, s.opt.Workers))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range s.opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if lim.Wait(runCtx) != nil {
					return
				}
				if s.opt.MaxCheckIns > 0 && s.checkIns.Load() >= s.opt.MaxCheckIns {
					cancel()
					return
				}
				d := s.online[int(next.Add(1)-1)%len(s.online)]
				if d.mu.TryLock() { // its previous turn is still running: skip
					s.turn(runCtx, d)
					d.mu.Unlock()
				}
			}
		}()
	}
	var timeline []Second
	tick := time.NewTicker(s.opt.ProgressEvery)
	last := int64(0)
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case <-tick.C:
		}
		n := s.checkIns.Load()
		s.histMu.Lock()
		p99 := quantile(s.window, 0.99)
		p50 := quantile(s.window, 0.5)
		errs := s.windowErrors
		clear(s.window)
		s.windowErrors = 0
		s.histMu.Unlock()
		sec := Second{T: len(timeline) + 1, CheckIns: n - last, Errors: errs, P99Ms: ms(p99)}
		timeline = append(timeline, sec)
		last = n
		if s.opt.Progress != nil {
			fmt.Fprintf(s.opt.Progress, "t=%3ds rate=%6.0f/s p50=%.1fms p99=%.1fms errors=%d assignments=%d acked=%d states=%s\n",
				int(time.Since(start).Seconds()), float64(sec.CheckIns)/s.opt.ProgressEvery.Seconds(), ms(p50), ms(p99), errs,
				s.assignments.Load(), s.acked.Load(), formatCounts(s.states()))
		}
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)
	pending := s.drain(ctx)
	sum := &Summary{Devices: len(s.devices), Online: len(s.online), Seconds: elapsed.Seconds(), CheckIns: s.checkIns.Load(),
		Assignments: s.assignments.Load(), EventsAcked: s.acked.Load(), EventsPending: pending, Failovers: s.failovers.Load(),
		Errors: map[string]int64{}, States: s.states(), Installed: map[string]int{}, Timeline: timeline, Beliefs: map[string]Belief{}}
	sum.Rate = float64(sum.CheckIns) / elapsed.Seconds()
	s.histMu.Lock()
	sum.P50Ms, sum.P99Ms = ms(quantile(s.total, 0.5)), ms(quantile(s.total, 0.99))
	s.histMu.Unlock()
	s.errMu.Lock()
	for k, v := range s.errs {
		sum.Errors[k] = v
	}
	s.errMu.Unlock()
	for _, d := range s.devices {
		d.mu.Lock()
		sum.Installed[d.installed]++
		b := Belief{Installed: d.installed}
		if len(d.acked) > 0 {
			b.States = map[string]string{}
			for k, v := range d.acked {
				b.States[k] = v
			}
		}
		sum.Beliefs[d.id] = b
		d.mu.Unlock()
	}
	return sum, nil
}

// drain delivers every device's unacknowledged events, due or not, then
// has each device that reported anything check in once more (so the
// installed version it believes is re-reported to whichever replica is
// up); it returns the events it could not deliver.
func (s *Sim) drain(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, DrainTimeout)
	defer cancel()
	left := 0
	for _, d := range s.online {
		d.mu.Lock()
		for i := range d.pending {
			d.pending[i].due = time.Time{}
		}
		for len(d.pending) > 0 && ctx.Err() == nil {
			if !s.deliver(ctx, d) {
				time.Sleep(100 * time.Millisecond) // every replica refused: wait for one to come back
			}
		}
		left += len(d.pending)
		if len(d.acked) > 0 && ctx.Err() == nil {
			s.checkIn(ctx, d, false)
		}
		d.mu.Unlock()
	}
	return left
}

// turn is one device's go: deliver due events, else check in.
func (s *Sim) turn(ctx context.Context, d *device) {
	if len(d.pending) > 0 && !d.pending[0].due.After(time.Now()) {
		s.deliver(ctx, d)
		return
	}
	s.checkIn(ctx, d, true)
}

// checkIn reports the installed version and plans the events of a new
// assignment.
func (s *Sim) checkIn(ctx context.Context, d *device, plan bool) {
	var a *api.Assignment
	err := s.send(ctx, d, func(c *client.Client) error {
		var err error
		a, err = c.CheckIn(ctx, api.CheckIn{Installed: d.installed, State: api.StateIdle})
		return err
	})
	if ctx.Err() != nil {
		return
	}
	s.checkIns.Add(1)
	if err != nil || a == nil || !plan || len(d.pending) > 0 {
		return
	}
	if st, ok := d.acked[a.Target]; ok && api.InstallState(st).Final() {
		return // already done with it; the server will stop offering it
	}
	s.assignments.Add(1)
	now := time.Now()
	lat := s.opt.Behaviour.EventLatency
	add := func(st api.InstallState, after time.Duration, reason string) {
		h := sha256.Sum256([]byte(d.id + "\n" + a.Target + "\n" + string(st)))
		d.pending = append(d.pending, event{DeviceEvent: api.DeviceEvent{ID: hex.EncodeToString(h[:16]), DeviceID: d.id, Target: a.Target,
			Version: a.Version, State: st, Reason: reason, Time: now.Add(after).UTC().Truncate(time.Millisecond)}, due: now.Add(after)})
	}
	if d.defers && !d.deferred[a.Target] {
		d.deferred[a.Target] = true
		add(api.StateDeferred, 0, "in clinical use (simulated)")
		return
	}
	add(api.StateDownloading, 0, "")
	add(api.StateStaged, lat/2, "")
	if d.fails {
		add(api.StateRolledBack, lat, "health check failed (simulated)")
	} else {
		add(api.StateCommitted, lat, "")
	}
}

// deliver sends the due events in one batch; it reports whether a server
// acknowledged them.
func (s *Sim) deliver(ctx context.Context, d *device) bool {
	n := 0
	for n < len(d.pending) && !d.pending[n].due.After(time.Now()) {
		n++
	}
	if n == 0 {
		return true
	}
	b := api.EventBatch{}
	for _, e := range d.pending[:n] {
		b.Events = append(b.Events, e.DeviceEvent)
	}
	err := s.send(ctx, d, func(c *client.Client) error {
		_, err := c.SendEvents(ctx, b)
		return err
	})
	if err != nil {
		return false
	}
	for _, e := range d.pending[:n] {
		d.acked[e.Target] = string(e.State)
		if e.State == api.StateCommitted {
			d.installed = e.Version
		}
	}
	s.acked.Add(int64(n))
	d.pending = d.pending[n:]
	return true
}

// send runs one request on the device's preferred server and, when that
// one cannot be reached or answers 5xx, on each other server in turn.
func (s *Sim) send(ctx context.Context, d *device, req func(*client.Client) error) error {
	var err error
	for i := range d.clients {
		c := d.clients[(d.pref+i)%len(d.clients)]
		t0 := time.Now()
		err = req(c)
		if ctx.Err() != nil {
			return ctx.Err() // the run ended: not the server's failure
		}
		s.record(time.Since(t0), err)
		if err == nil || !retryable(err) {
			return err
		}
		s.failovers.Add(1)
	}
	return err
}

func retryable(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	return true // transport: the replica is down or unreachable
}

func (s *Sim) record(d time.Duration, err error) {
	if err != nil {
		kind := "unreachable"
		var ae *api.Error
		if errors.As(err, &ae) {
			kind = fmt.Sprintf("%d %s", ae.Status, ae.Code)
		}
		s.errMu.Lock()
		s.errs[kind]++
		s.errMu.Unlock()
	}
	b := min(int(d/histBucket), histBuckets-1)
	s.histMu.Lock()
	s.total[b]++
	s.window[b]++
	if err != nil {
		s.windowErrors++
	}
	s.histMu.Unlock()
}

// states counts devices by the newest acknowledged state of any target.
func (s *Sim) states() map[string]int {
	out := map[string]int{}
	for _, d := range s.online {
		if !d.mu.TryLock() {
			continue // busy: counted next time
		}
		for _, st := range d.acked {
			out[st]++
		}
		d.mu.Unlock()
	}
	return out
}

func quantile(h []int64, q float64) time.Duration {
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := int64(q*float64(n-1)) + 1
	var seen int64
	for i, c := range h {
		seen += c
		if seen >= want {
			return time.Duration(i+1) * histBucket
		}
	}
	return histBuckets * histBucket
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}
