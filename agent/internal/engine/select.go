package engine

import (
	"errors"
	"slices"

	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/internal/tufclient"
)

// Refusal is a release the device will not install, and the check that
// refused it (release.Check* names, "delegation", "release schema", …).
type Refusal struct {
	Target  string `json:"target"`
	Version string `json:"version"`
	Check   string `json:"check"`
	Reason  string `json:"reason"`
}

func (r *Refusal) Error() string { return r.Check + ": " + r.Reason }

// Selection is what the device should install, if anything.
type Selection struct {
	// Chosen is the release to install (nil: none).
	Chosen *tufclient.Release
	// Refused is set when a named target (an assignment) may not be
	// installed here.
	Refused *Refusal
	// Considered lists every release looked at, with its refusal.
	Considered []tufclient.Candidate
}

// Select is the one place a device chooses a release from the verified
// repository; the engine and `vigil-agent check` both use it. With target
// set (the server's assignment, or check --target) it is that target or a
// refusal naming the check; otherwise the newest release the device may
// install. Targets in skip (failed or rolled back here before) are never
// chosen again.
func Select(tc *tufclient.Client, d release.Device, target string, skip []string) (Selection, error) {
	list, bad, err := tc.Releases(d.Product)
	if err != nil {
		return Selection{}, err
	}
	var sel Selection
	// SBOM targets describe releases; they are never candidates.
	list = slices.DeleteFunc(list, func(r tufclient.Release) bool { return r.Custom.Kind == release.KindSBOM })
	for i := range list {
		sel.Considered = append(sel.Considered, tufclient.Candidate{Release: list[i], Refusal: list[i].Custom.Check(d)})
	}
	if target == "" {
		for i, c := range sel.Considered {
			if c.Refusal == nil && !slices.Contains(skip, c.Path) {
				sel.Chosen = &list[i]
				break
			}
		}
		return sel, nil
	}
	if slices.Contains(skip, target) {
		return sel, nil
	}
	for _, b := range bad {
		if b.Path == target {
			sel.Refused = &Refusal{Target: target, Version: "unknown", Check: b.Check, Reason: b.Err.Error()}
			return sel, nil
		}
	}
	for i, c := range sel.Considered {
		if c.Path != target {
			continue
		}
		if c.Refusal != nil {
			sel.Refused = &Refusal{Target: target, Version: c.Custom.Version, Check: c.Refusal.Check, Reason: c.Refusal.Reason}
			return sel, nil
		}
		sel.Chosen = &list[i]
		return sel, nil
	}
	// Not in the product's role: maybe signed somewhere else, or not at
	// all. Either way this device will not take it.
	if _, err := tc.TargetInfo(target); err != nil {
		var te *tufclient.Error
		if !errors.As(err, &te) || te.Check != tufclient.CheckTargetNotFound {
			return sel, err
		}
	}
	sel.Refused = &Refusal{Target: target, Version: "unknown", Check: "delegation", Reason: "target " + target + " is not a signed release of product " + d.Product}
	return sel, nil
}
