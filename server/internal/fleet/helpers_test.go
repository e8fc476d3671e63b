package fleet_test

import (
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// newFleet wires a fleet to every area of one store (as app does).
func newFleet(st state.Store, targets fleet.Targets) *fleet.Fleet {
	return fleet.New(fleet.Stores{Registry: st, Nonces: st, Secrets: st, Rollouts: st, Progress: st, Events: st, Audit: st}, targets, nil)
}
