package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/rollout"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Intervals, with their units.
const (
	// EpochCheckInterval bounds how stale a replica's cached rollout state
	// may be: at most this long after a change elsewhere.
	EpochCheckInterval = time.Second
	// LastSeenFlushInterval: buffered check-ins are written this often.
	LastSeenFlushInterval = 10 * time.Second
	// NonceLifetime keeps nonces as long as a timestamp can be accepted.
	NonceLifetime = 2 * MaxRequestSkew
	// MaxImportRows bounds one CSV import.
	MaxImportRows = 100000
	// MaxWindows and MaxCareAreas bound a site's lists; MaxCap its caps.
	MaxWindows   = 64
	MaxCareAreas = 256
	MaxCap       = 1_000_000
	// MaxTags bounds a device's tags.
	MaxTags = 32
	// MaxUDIDI bounds a UDI device identifier, in bytes (GS1 GTIN-14 and
	// HIBCC fit easily).
	MaxUDIDI = 64
)

// Targets resolves a release to its target path (the TUF repository).
type Targets interface {
	ReleaseTarget(ctx context.Context, product, version string) (target, severity string, err error)
}

// Service is the fleet: registry, device check-ins and events, rollouts.
type Service struct {
	st      state.Store
	targets Targets
	now     func() time.Time
	log     *zap.Logger

	// Per-replica caches of configuration, dropped when the fleet epoch
	// moves (checked at most every EpochCheckInterval); rollout progress is
	// re-read on the same schedule.
	mu        sync.Mutex
	epoch     int64
	epochAt   time.Time
	snapshots map[string]*rollout.Snapshot // by rollout id
	rollouts  map[string][]state.Rollout   // by product
	devices   map[string]state.Device      // by id
	seen      map[string]state.Touch       // check-ins not yet written
}

// New returns the service.
func New(st state.Store) *Service {
	return &Service{st: st, now: time.Now, log: zap.NewNop(), snapshots: map[string]*rollout.Snapshot{},
		rollouts: map[string][]state.Rollout{}, devices: map[string]state.Device{}, seen: map[string]state.Touch{}}
}

// WithTargets sets the release resolver and logger.
func (s *Service) WithTargets(t Targets, log *zap.Logger) *Service {
	s.targets = t
	if log != nil {
		s.log = log
	}
	return s
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

func (s *Service) record(ctx context.Context, action, subject string, details any) {
	if _, err := audit.Record(ctx, s.st, action, subject, details); err != nil {
		s.log.Error("audit entry not written", zap.String("action", action), zap.Error(err))
	}
}

// SiteInput is a site as operators describe it.
type SiteInput struct {
	Name        string   `json:"name"`
	TimeZone    string   `json:"time_zone"`
	Windows     []string `json:"windows"`
	CareAreas   []string `json:"care_areas"`
	SiteCap     int      `json:"site_cap"`
	CareAreaCap int      `json:"care_area_cap"`
	Policy      string   `json:"policy"`
}

func toSite(in SiteInput) (*rollout.Site, error) {
	if err := input.Identifier("site name", in.Name); err != nil {
		return nil, err
	}
	// "Local" would mean the server's own zone, which differs between
	// replicas and moves with the host: a site names its real zone.
	if _, err := time.LoadLocation(in.TimeZone); err != nil || in.TimeZone == "" || in.TimeZone == "Local" {
		return nil, apperr.New(apperr.Invalid, "site %s: time zone %q is not an IANA zone such as America/Chicago", in.Name, in.TimeZone)
	}
	if len(in.Windows) > MaxWindows || len(in.CareAreas) > MaxCareAreas {
		return nil, apperr.New(apperr.TooLarge, "site %s: at most %d maintenance windows and %d care areas", in.Name, MaxWindows, MaxCareAreas)
	}
	for _, a := range in.CareAreas {
		if err := input.Required("site "+in.Name+": care area", a, input.MaxName); err != nil {
			return nil, err
		}
	}
	if in.SiteCap > MaxCap || in.CareAreaCap > MaxCap {
		return nil, apperr.New(apperr.Invalid, "site %s: caps are at most %d", in.Name, MaxCap)
	}
	site := &rollout.Site{Name: in.Name, TimeZone: in.TimeZone, CareAreas: in.CareAreas, SiteCap: in.SiteCap, CareAreaCap: in.CareAreaCap}
	for _, w := range in.Windows {
		win, err := rollout.ParseWindow(w)
		if err != nil {
			return nil, apperr.New(apperr.Invalid, "site %s: %v", in.Name, err)
		}
		site.Windows = append(site.Windows, win)
	}
	if in.SiteCap < 0 || in.CareAreaCap < 0 {
		return nil, apperr.New(apperr.Invalid, "site %s: caps cannot be negative", in.Name)
	}
	aa, err := rollout.ParsePolicy(in.Policy)
	if err != nil {
		return nil, apperr.New(apperr.Invalid, "site %s: %v", in.Name, err)
	}
	site.AutoApprove = aa
	return site, nil
}

// PutSite creates or updates a site.
func (s *Service) PutSite(ctx context.Context, in SiteInput) error {
	if err := scoped(ctx, in.Name); err != nil {
		return err
	}
	site, err := toSite(in)
	if err != nil {
		return err
	}
	if err := s.st.PutSite(ctx, state.Site{Name: site.Name, TimeZone: site.TimeZone, Windows: in.Windows, CareAreas: in.CareAreas,
		SiteCap: in.SiteCap, CareAreaCap: in.CareAreaCap, AutoApprove: site.AutoApprove}); err != nil {
		return err
	}
	s.record(ctx, "site.put", in.Name, in)
	return nil
}

// DeviceInput is a device as registered.
type DeviceInput struct {
	ID        string   `json:"id"`
	UDIDI     string   `json:"udi_di"`
	Product   string   `json:"product"`
	Hardware  string   `json:"hardware"`
	Site      string   `json:"site"`
	CareArea  string   `json:"care_area"`
	Tags      []string `json:"tags"`
	PublicKey string   `json:"public_key"` // base64 raw ed25519
	Installed string   `json:"installed_version"`
}

func (in DeviceInput) validate() error {
	if err := input.Line("udi_di", in.UDIDI, MaxUDIDI); err != nil {
		return err
	}
	if err := input.Line("care_area", in.CareArea, input.MaxName); err != nil {
		return err
	}
	if len(in.Tags) > MaxTags {
		return fmt.Errorf("more than %d tags", MaxTags)
	}
	for _, tag := range in.Tags {
		if err := input.Required("tag", tag, input.MaxName); err != nil {
			return err
		}
	}
	switch {
	case !deviceID.MatchString(in.ID):
		return fmt.Errorf("id %q is not a device id", in.ID)
	case release.ValidateProduct(in.Product) != nil:
		return fmt.Errorf("product %q is not a product name", in.Product)
	case in.Hardware == "":
		return errors.New("hardware is empty")
	case in.Site == "":
		return errors.New("site is empty")
	case in.Installed != "" && release.ValidateVersion(in.Installed) != nil:
		return fmt.Errorf("installed_version %q is not semver", in.Installed)
	}
	if _, ok := DecodePublicKey(in.PublicKey); !ok {
		return errors.New("public_key is not a base64 ed25519 public key")
	}
	return nil
}

// RegisterDevices registers devices, all or none.
func (s *Service) RegisterDevices(ctx context.Context, ins []DeviceInput) error {
	if len(ins) == 0 {
		return apperr.New(apperr.Invalid, "no devices given")
	}
	seen := map[string]int{}
	ds := make([]state.Device, 0, len(ins))
	for i, in := range ins {
		if err := in.validate(); err != nil {
			return apperr.New(apperr.Invalid, "device %d (%s): %v", i+1, in.ID, err)
		}
		if prev, dup := seen[in.ID]; dup {
			return apperr.New(apperr.Invalid, "device %s is listed twice (entries %d and %d)", in.ID, prev, i+1)
		}
		seen[in.ID] = i + 1
		ds = append(ds, state.Device{ID: in.ID, UDIDI: in.UDIDI, Product: in.Product, Hardware: in.Hardware, Site: in.Site,
			CareArea: in.CareArea, Tags: in.Tags, PublicKey: in.PublicKey, Installed: in.Installed})
	}
	if err := s.st.AddDevices(ctx, ds); err != nil {
		return err
	}
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	s.record(ctx, "device.register", strings.Join(ids, ","), map[string]int{"count": len(ds)})
	return nil
}

// CSVColumns is the header `vigil device import` expects.
var CSVColumns = []string{"id", "udi_di", "product", "hardware", "site", "care_area", "tags", "public_key", "installed_version"}

// ParseCSV reads devices from CSV, validating row by row; errors name the
// line. Tags are separated by '|'.
//
// Hostile input (finding 11): a cell that starts with = + - @ (a formula to
// any spreadsheet that later opens an export) or holds a control character
// is refused; a UTF-8 byte-order mark (as spreadsheets write) is skipped.
func ParseCSV(r io.Reader) ([]DeviceInput, error) {
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = len(CSVColumns)
	header, err := cr.Read()
	if err != nil {
		return nil, apperr.New(apperr.Invalid, "line 1: cannot read the header: %v", err)
	}
	if !slices.Equal(header, CSVColumns) {
		return nil, apperr.New(apperr.Invalid, "line 1: header is %q, want %q", strings.Join(header, ","), strings.Join(CSVColumns, ","))
	}
	var out []DeviceInput
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// (FieldPos panics after a failed Read: found by fuzzing.)
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, apperr.New(apperr.Invalid, "line %d: %v", pe.Line, pe.Err)
			}
			return nil, apperr.New(apperr.Invalid, "reading the CSV: %v", err)
		}
		line, _ := cr.FieldPos(0)
		if len(out) >= MaxImportRows {
			return nil, apperr.New(apperr.TooLarge, "more than %d devices in one import", MaxImportRows)
		}
		for i, cell := range rec {
			if err := input.CSVCell(CSVColumns[i], cell); err != nil {
				return nil, apperr.New(apperr.Invalid, "line %d: %v", line, err)
			}
		}
		in := DeviceInput{ID: rec[0], UDIDI: rec[1], Product: rec[2], Hardware: rec[3], Site: rec[4], CareArea: rec[5], PublicKey: rec[7], Installed: rec[8]}
		if rec[6] != "" {
			in.Tags = strings.Split(rec[6], "|")
		}
		if err := in.validate(); err != nil {
			return nil, apperr.New(apperr.Invalid, "line %d: %v", line, err)
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		return nil, apperr.New(apperr.Invalid, "the file lists no devices")
	}
	return out, nil
}

// Decommission retires a device and revokes its key: at once on this
// replica, within EpochCheckInterval on the others.
func (s *Service) Decommission(ctx context.Context, id string) error {
	if err := s.st.Decommission(ctx, id); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.devices, id)
	s.epochAt = time.Time{} // re-check the epoch on the next request
	s.mu.Unlock()
	s.record(ctx, "device.decommission", id, nil)
	return nil
}

// DeviceRequest is a signed request as the HTTP layer saw it.
type DeviceRequest struct {
	Method, Path, DeviceID, Timestamp, Nonce, Signature string
	Body                                                []byte
	// ChangesState asks for nonce replay protection.
	ChangesState bool
}

// Authenticate verifies a device's signed request and returns the device.
func (s *Service) Authenticate(ctx context.Context, r DeviceRequest) (state.Device, error) {
	dev, _, err := s.AuthenticateAt(ctx, r)
	return dev, err
}

// AuthenticateAt is Authenticate that also returns the time the device
// signed into the request.
func (s *Service) AuthenticateAt(ctx context.Context, r DeviceRequest) (state.Device, time.Time, error) {
	dev, ts, err := s.authenticate(ctx, r)
	return dev, time.Unix(ts, 0), err
}

// PreAuthenticate checks what a signed request's headers say before its
// body is read: a well-formed device id and nonce, a timestamp inside the
// skew window, a registered device that is not decommissioned. Only then is
// a body worth reading; Authenticate checks the signature over it.
func (s *Service) PreAuthenticate(ctx context.Context, r DeviceRequest) error {
	_, _, err := s.checkHeaders(ctx, r)
	return err
}

// nonceRE: a nonce is a token, never something that could shift the
// newline-separated fields of the signing string.
var nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,` + strconv.Itoa(MaxNonceLength) + `}$`)

func unauthenticated(format string, args ...any) error {
	return apperr.New(apperr.Unauthorized, format, args...).WithCode("device_unauthenticated")
}

func (s *Service) checkHeaders(ctx context.Context, r DeviceRequest) (state.Device, int64, error) {
	if !deviceID.MatchString(r.DeviceID) || !nonceRE.MatchString(r.Nonce) {
		return state.Device{}, 0, unauthenticated("the request is not signed by a device (missing or malformed %s/%s)", api.HeaderDevice, api.HeaderNonce)
	}
	ts, err := strconv.ParseInt(r.Timestamp, 10, 64)
	if err != nil {
		return state.Device{}, 0, unauthenticated("%s is not a Unix time", api.HeaderTimestamp)
	}
	if d := s.now().Sub(time.Unix(ts, 0)); d > MaxRequestSkew || d < -MaxRequestSkew {
		return state.Device{}, 0, unauthenticated("the request's timestamp is %s away from the server's clock (limit %s)", d.Round(time.Second), MaxRequestSkew)
	}
	dev, err := s.device(ctx, r.DeviceID)
	if apperr.Is(err, apperr.NotFound) {
		return state.Device{}, 0, unauthenticated("device is not registered")
	}
	if err != nil {
		return state.Device{}, 0, err
	}
	if _, ok := DecodePublicKey(dev.PublicKey); dev.Decommissioned || !ok {
		return state.Device{}, 0, unauthenticated("device is decommissioned")
	}
	return dev, ts, nil
}

func (s *Service) authenticate(ctx context.Context, r DeviceRequest) (state.Device, int64, error) {
	dev, ts, err := s.checkHeaders(ctx, r)
	if err != nil {
		return dev, 0, err
	}
	pub, _ := DecodePublicKey(dev.PublicKey)
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil || !ed25519.Verify(pub, SigningString(r.Method, r.Path, ts, r.Nonce, r.Body), sig) {
		return state.Device{}, 0, unauthenticated("the request's signature does not verify with the device's key")
	}
	if r.ChangesState {
		if err := s.st.UseNonce(ctx, dev.ID, r.Nonce, s.now(), s.now().Add(NonceLifetime)); err != nil {
			return state.Device{}, 0, err
		}
	}
	return dev, ts, nil
}

func toRolloutDevice(d state.Device) rollout.Device {
	return rollout.Device{ID: d.ID, Product: d.Product, Hardware: d.Hardware, Site: d.Site, CareArea: d.CareArea, Tags: d.Tags, Installed: d.Installed}
}

// syncLocked drops cached configuration when the fleet epoch moved, and
// re-reads rollout progress; at most every EpochCheckInterval. s.mu held.
func (s *Service) syncLocked(ctx context.Context) error {
	now := s.now()
	if now.Sub(s.epochAt) < EpochCheckInterval {
		return nil
	}
	e, err := s.st.FleetEpoch(ctx)
	if err != nil {
		return err
	}
	s.epochAt = now
	if e != s.epoch {
		s.epoch = e
		s.snapshots = map[string]*rollout.Snapshot{}
		s.rollouts = map[string][]state.Rollout{}
		s.devices = map[string]state.Device{}
		return nil
	}
	for id, snap := range s.snapshots {
		ps, err := s.st.Progress(ctx, id)
		if err != nil {
			return err
		}
		m := make(map[string]*rollout.Progress, len(ps))
		for _, p := range ps {
			m[p.DeviceID] = &rollout.Progress{DeviceID: p.DeviceID, Wave: p.Wave, State: p.State, Updated: p.Updated}
		}
		snap.ReplaceProgress(m)
	}
	return nil
}

// device returns a registered device, from the cache when current.
func (s *Service) device(ctx context.Context, id string) (state.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.syncLocked(ctx); err != nil {
		return state.Device{}, err
	}
	if d, ok := s.devices[id]; ok {
		return d, nil
	}
	d, err := s.st.Device(ctx, id)
	if err != nil {
		return d, err
	}
	s.devices[id] = d
	return d, nil
}

// snapshotsFor returns the cached decision state of a product's active
// rollouts. s.mu held.
func (s *Service) snapshotsForLocked(ctx context.Context, product string) ([]*rollout.Snapshot, error) {
	if err := s.syncLocked(ctx); err != nil {
		return nil, err
	}
	rs, ok := s.rollouts[product]
	if !ok {
		var err error
		if rs, err = s.st.Rollouts(ctx, product); err != nil {
			return nil, err
		}
		s.rollouts[product] = rs
	}
	var out []*rollout.Snapshot
	for _, r := range rs {
		if r.State != string(rollout.Active) {
			continue
		}
		snap, ok := s.snapshots[r.ID]
		if !ok {
			var err error
			if snap, err = s.loadSnapshot(ctx, r); err != nil {
				return nil, err
			}
			s.snapshots[r.ID] = snap
		}
		out = append(out, snap)
	}
	return out, nil
}

// FlushLastSeen writes buffered check-ins (installed version, last seen)
// in one transaction.
func (s *Service) FlushLastSeen(ctx context.Context) error {
	s.mu.Lock()
	batch := make([]state.Touch, 0, len(s.seen))
	for _, t := range s.seen {
		batch = append(batch, t)
	}
	s.seen = map[string]state.Touch{}
	s.mu.Unlock()
	return s.st.TouchDevices(ctx, batch)
}

// loadSnapshot reads everything one rollout's decisions need.
func (s *Service) loadSnapshot(ctx context.Context, r state.Rollout) (*rollout.Snapshot, error) {
	var plan rollout.Plan
	if err := json.Unmarshal(r.Plan, &plan); err != nil {
		return nil, fmt.Errorf("rollout %s plan: %w", r.ID, err)
	}
	snap := &rollout.Snapshot{
		Rollout: &rollout.Rollout{ID: r.ID, Plan: plan, Target: r.Target, State: rollout.State(r.State), CurrentWave: r.CurrentWave,
			WaveOpened: r.WaveOpened, HaltReason: r.HaltReason, Created: r.Created},
		Sites: map[string]*rollout.Site{}, Devices: map[string]rollout.Device{}, Progress: map[string]*rollout.Progress{},
	}
	sites, err := s.st.Sites(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range sites {
		site, err := toSite(SiteInput{Name: st.Name, TimeZone: st.TimeZone, Windows: st.Windows, CareAreas: st.CareAreas, SiteCap: st.SiteCap, CareAreaCap: st.CareAreaCap, Policy: policyString(st.AutoApprove)})
		if err != nil {
			return nil, err
		}
		snap.Sites[st.Name] = site
	}
	devs, err := s.st.DevicesOf(ctx, plan.Product)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		if !d.Decommissioned {
			snap.Devices[d.ID] = toRolloutDevice(d)
		}
	}
	as, err := s.st.Approvals(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		snap.Approvals = append(snap.Approvals, rollout.Approval{Wave: a.Wave, Site: a.Site, By: a.By, Comment: a.Comment, NotBefore: a.NotBefore, At: a.At, Revoked: a.Revoked})
	}
	ds, err := s.st.Deferrals(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		snap.Deferrals = append(snap.Deferrals, rollout.Deferral{Wave: d.Wave, Site: d.Site, Reason: d.Reason, Until: d.Until})
	}
	ps, err := s.st.Progress(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		snap.Progress[p.DeviceID] = &rollout.Progress{DeviceID: p.DeviceID, Wave: p.Wave, State: p.State, Updated: p.Updated}
	}
	return snap, nil
}

func policyString(aa []string) string {
	if len(aa) == 0 {
		return ""
	}
	return "auto-approve:" + strings.Join(aa, ",")
}

// CheckIn answers a device: at most one assignment. It writes only when it
// hands out a new assignment (recorded, so caps hold across replicas); the
// installed version and last-seen time are buffered and written in batches
// (FlushLastSeen). signedAt is the time the device signed the request: a
// check-in signed no later than the newest one seen (a replay within the
// skew window) does not change the recorded installed version.
func (s *Service) CheckIn(ctx context.Context, dev state.Device, in api.CheckIn, signedAt time.Time) (*api.Assignment, error) {
	now := s.now()
	if in.Installed != "" && release.ValidateVersion(in.Installed) != nil {
		return nil, apperr.New(apperr.Invalid, "installed_version %q is not semver", in.Installed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	newest := dev.LastCheckIn
	if d, ok := s.devices[dev.ID]; ok && d.LastCheckIn.After(newest) {
		newest = d.LastCheckIn
	}
	if t, ok := s.seen[dev.ID]; ok && t.SignedAt.After(newest) {
		newest = t.SignedAt
	}
	if in.Installed != "" && signedAt.After(newest) {
		dev.Installed, dev.LastCheckIn = in.Installed, signedAt
		s.seen[dev.ID] = state.Touch{DeviceID: dev.ID, Installed: in.Installed, Seen: now, SignedAt: signedAt}
		if d, ok := s.devices[dev.ID]; ok {
			d.Installed, d.LastCheckIn = in.Installed, signedAt
			s.devices[dev.ID] = d
		}
	} else if d, ok := s.devices[dev.ID]; ok {
		dev = d // a replay: decide on what the device last really said
	}
	snaps, err := s.snapshotsForLocked(ctx, dev.Product)
	if err != nil {
		return nil, err
	}
	rd := toRolloutDevice(dev)
	for _, snap := range snaps {
		a, _ := snap.Decide(now, rd)
		if a == nil {
			continue
		}
		if snap.Progress[dev.ID] == nil {
			wave := snap.WaveOfDevice(dev.ID)
			fresh, err := s.st.SetProgress(ctx, state.Progress{RolloutID: snap.Rollout.ID, DeviceID: dev.ID, Wave: wave, State: rollout.Assigned, Updated: now}, true)
			if err != nil {
				return nil, err
			}
			snap.SetProgress(dev.ID, rollout.Assigned, now)
			if !fresh {
				// Another replica assigned it first: its answer stands.
				delete(s.snapshots, snap.Rollout.ID)
			}
		}
		return &api.Assignment{RolloutID: a.RolloutID, Target: a.Target, Version: a.Version, Wave: a.Wave, NotBefore: a.NotBefore, WindowEnd: a.WindowEnd}, nil
	}
	return nil, nil
}

// newID makes a rollout id.
func newID() string { return "ro-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] }
