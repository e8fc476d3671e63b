// Package rollout is the staged-rollout domain: how far a release may spread,
// to which devices, when, and when it must stop. It is pure decision logic
// over a snapshot of state (the rollout, its devices, approvals, deferrals
// and per-device progress) with the clock passed in, so the same code runs
// in the server, in a 10,000-device simulation, and on any replica with the
// same answer. Storage and HTTP live elsewhere.
//
// Safety rules (DESIGN.md "Rollouts"):
//   - a device's wave is fixed: bucket = SHA-256(rollout id ‖ device id) mod 10000;
//   - a device at site S gets an assignment only when S approved the wave
//     (or S's standing policy approves the release's severity), S has not
//     deferred it, the time is inside one of S's maintenance windows, and
//     fewer than the cap of S's devices (and of the device's care area) are
//     installing at once — so a ward's monitors never all restart together;
//   - the next wave opens only when the current one reached its success
//     threshold and its soak time passed;
//   - failures (failed + rolled back, never deferred) reaching the halt rule
//     halt the whole rollout, which then hands out nothing.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
)

// Buckets is the number of wave buckets: shares are resolved to 0.01 %.
const Buckets = 10000

// Limits, with their units.
const (
	MaxWaves       = 10
	MaxNameLength  = 64
	DefaultSoak    = 24 * time.Hour
	DefaultSuccess = 0.95
)

// Bucket places a device in [0, Buckets): stable across restarts and
// replicas because it depends only on the two ids.
func Bucket(rolloutID, deviceID string) int {
	h := sha256.Sum256([]byte(rolloutID + "\x00" + deviceID))
	return int(binary.BigEndian.Uint64(h[:8]) % Buckets)
}

// Wave is one step of a rollout: it covers the selection up to Share
// (cumulative, 0 < Share ≤ 1).
type Wave = api.Wave

// HaltRule halts the rollout when at least MinAttempts devices finished an
// attempt and the failed share of them is at least FailureRate.
type HaltRule struct {
	FailureRate float64 `json:"failure_rate"`
	MinAttempts int     `json:"min_attempts"`
}

// Selection says which devices a rollout is for. Empty lists match all.
type Selection struct {
	Product      string   `json:"product"`
	Hardware     []string `json:"hardware,omitempty"`
	Sites        []string `json:"sites,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	VersionBelow string   `json:"version_below,omitempty"`
}

// Plan is what a release engineer asks for.
type Plan struct {
	Product  string        `json:"product"`
	Version  string        `json:"version"`
	Severity string        `json:"severity"`
	Select   Selection     `json:"selection"`
	Waves    []Wave        `json:"waves"`
	Soak     time.Duration `json:"soak"`
	Success  float64       `json:"success"`
	Halt     HaltRule      `json:"halt"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParseWaves reads "canary:1%,pilot:10%,broad:50%,all:100%".
func ParseWaves(s string) ([]Wave, error) {
	var waves []Wave
	prev := 0.0
	for i, part := range strings.Split(s, ",") {
		name, pct, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !strings.HasSuffix(pct, "%") {
			return nil, fmt.Errorf("wave %d %q is not NAME:PERCENT%%", i+1, part)
		}
		if !nameRE.MatchString(name) || len(name) > MaxNameLength {
			return nil, fmt.Errorf("wave name %q: use lower-case letters, digits and '-'", name)
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
		if err != nil || !(v > prev*100 && v <= 100) { // also refuses NaN (found by fuzzing)
			return nil, fmt.Errorf("wave %s: share %q must grow from wave to wave and end at 100%%", name, pct)
		}
		prev = v / 100
		waves = append(waves, Wave{Name: name, Share: prev})
	}
	if len(waves) == 0 || len(waves) > MaxWaves {
		return nil, fmt.Errorf("a rollout has 1 to %d waves", MaxWaves)
	}
	if waves[len(waves)-1].Share != 1 {
		return nil, fmt.Errorf("the last wave must reach 100%%, not %g%%", waves[len(waves)-1].Share*100)
	}
	seen := map[string]bool{}
	for _, w := range waves {
		if seen[w.Name] {
			return nil, fmt.Errorf("wave %q is named twice", w.Name)
		}
		seen[w.Name] = true
	}
	return waves, nil
}

// ParsePercent reads "95%".
func ParsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(s), "%") || !(v >= 0 && v <= 100) { // NaN too

		return 0, fmt.Errorf("%q is not a percentage such as 95%%", s)
	}
	return v / 100, nil
}

// ParseHaltRule reads "failure>=5% min=20".
func ParseHaltRule(s string) (HaltRule, error) {
	var h HaltRule
	for _, f := range strings.Fields(s) {
		switch {
		case strings.HasPrefix(f, "failure>="):
			v, err := ParsePercent(strings.TrimPrefix(f, "failure>="))
			if err != nil {
				return h, fmt.Errorf("halt rule: %w", err)
			}
			h.FailureRate = v
		case strings.HasPrefix(f, "min="):
			n, err := strconv.Atoi(strings.TrimPrefix(f, "min="))
			if err != nil || n < 1 {
				return h, fmt.Errorf("halt rule: min=%q is not a positive number", strings.TrimPrefix(f, "min="))
			}
			h.MinAttempts = n
		default:
			return h, fmt.Errorf("halt rule: %q is not failure>=P%% or min=N", f)
		}
	}
	if h.FailureRate == 0 || h.MinAttempts == 0 {
		return h, fmt.Errorf("halt rule %q needs both failure>=P%% and min=N", s)
	}
	return h, nil
}

// ParseSelection reads "product=P,hardware=a|b,sites=x|y,tags=t,version<V".
func ParseSelection(s string) (Selection, error) {
	var sel Selection
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if v, ok := strings.CutPrefix(part, "version<"); ok {
			if err := release.ValidateVersion(v); err != nil {
				return sel, fmt.Errorf("selection version<: %w", err)
			}
			sel.VersionBelow = v
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return sel, fmt.Errorf("selection %q is not KEY=VALUE or version<V", part)
		}
		list := strings.Split(v, "|")
		switch k {
		case "product":
			sel.Product = v
		case "hardware":
			sel.Hardware = list
		case "sites", "site":
			sel.Sites = list
		case "tags", "tag":
			sel.Tags = list
		default:
			return sel, fmt.Errorf("selection key %q is not product, hardware, sites, tags or version<", k)
		}
	}
	if err := release.ValidateProduct(sel.Product); err != nil {
		return sel, fmt.Errorf("selection needs product=NAME: %w", err)
	}
	return sel, nil
}

// Validate checks a plan.
func (p *Plan) Validate() error {
	if err := release.ValidateProduct(p.Product); err != nil {
		return err
	}
	if err := release.ValidateVersion(p.Version); err != nil {
		return err
	}
	if p.Select.Product != p.Product {
		return fmt.Errorf("the selection's product %q differs from the release's %q", p.Select.Product, p.Product)
	}
	if len(p.Waves) == 0 {
		return fmt.Errorf("a rollout needs waves")
	}
	if p.Success <= 0 || p.Success > 1 {
		return fmt.Errorf("success threshold %g is not in (0, 100%%]", p.Success*100)
	}
	if p.Soak < 0 {
		return fmt.Errorf("soak %s is negative", p.Soak)
	}
	if p.Halt.FailureRate <= 0 || p.Halt.MinAttempts < 1 {
		return fmt.Errorf("a rollout needs a halt rule")
	}
	return nil
}

// WaveOf returns the index of the wave that device's bucket falls in.
func WaveOf(waves []Wave, bucket int) int {
	for i, w := range waves {
		if float64(bucket) < math.Round(w.Share*Buckets) {
			return i
		}
	}
	return len(waves) - 1
}

// Device is what the registry knows about a device, plus the version it
// reported at its last check-in.
type Device struct {
	ID        string
	Product   string
	Hardware  string
	Site      string
	CareArea  string
	Tags      []string
	Installed string
}

// Matches reports whether d is selected.
func (s *Selection) Matches(d Device) bool {
	if d.Product != s.Product {
		return false
	}
	if len(s.Hardware) > 0 && !slices.Contains(s.Hardware, d.Hardware) {
		return false
	}
	if len(s.Sites) > 0 && !slices.Contains(s.Sites, d.Site) {
		return false
	}
	for _, t := range s.Tags {
		if !slices.Contains(d.Tags, t) {
			return false
		}
	}
	if s.VersionBelow != "" && (d.Installed == "" || release.ValidateVersion(d.Installed) != nil || release.Compare(d.Installed, s.VersionBelow) >= 0) {
		return false
	}
	return true
}
