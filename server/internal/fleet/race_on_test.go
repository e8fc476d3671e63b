//go:build race

package fleet_test

// Under the race detector the store-backed simulation runs a smaller fleet;
// `make test` also runs it at full size without the detector.
const raceEnabled = true
