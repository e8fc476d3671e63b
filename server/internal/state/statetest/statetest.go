// Package statetest is the conformance suite every state.Store backend must
// pass. A backend's test calls Run with a function that makes a fresh, empty
// database and returns an opener for it; the suite opens it more than once to
// play several server replicas on one database.
package statetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Opener opens one more handle (one more "replica") on the same database.
type Opener func(t *testing.T) state.Store

// Run runs the suite. newDB must create an empty database per call.
func Run(t *testing.T, newDB func(t *testing.T) Opener) {
	one := func(t *testing.T) state.Store { return newDB(t)(t) }
	t.Run("PingAnswers", func(t *testing.T) {
		if err := one(t).Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("MissingRoleIsNotFound", func(t *testing.T) { testMissing(t, one(t)) })
	t.Run("PublishedVersionIsReadBack", func(t *testing.T) { testRoundTrip(t, one(t)) })
	t.Run("VersionMustMoveForward", func(t *testing.T) { testForward(t, one(t)) })
	t.Run("FailedPublishKeepsNothing", func(t *testing.T) { testRollback(t, one(t)) })
	t.Run("CancelledPublishKeepsNothing", func(t *testing.T) { testCancel(t, one(t)) })
	t.Run("InvalidVersionIsRefused", func(t *testing.T) { testInvalid(t, one(t)) })
	t.Run("ConcurrentPublishesFromTwoReplicasNeverRepeatAVersion", func(t *testing.T) { testConcurrent(t, newDB(t)) })
	t.Run("ReopenKeepsStateAndSchema", func(t *testing.T) { testReopen(t, newDB(t)) })
	t.Run("DeviceEventsAreStoredOncePerID", func(t *testing.T) { testEvents(t, one(t)) })
	t.Run("AuditChainFromTwoReplicasStaysLinearAndVerifies", func(t *testing.T) { testAudit(t, newDB(t)) })
	t.Run("LeaseIsHeldByOneReplicaAtATime", func(t *testing.T) { testLeases(t, newDB(t)) })
	t.Run("ServedBytesAddUpAcrossReplicas", func(t *testing.T) { testServed(t, newDB(t)) })
	t.Run("SharedSecretIsTheFirstOneStoredWhateverTheRace", func(t *testing.T) { testSecrets(t, newDB(t)) })
	t.Run("InstallCapsHoldExactlyWhenThreeReplicasClaimAtOnce", func(t *testing.T) { testClaims(t, newDB(t)) })
	t.Run("TokensAreStoredFoundListedAndRevoked", func(t *testing.T) { testTokens(t, one(t)) })
	t.Run("SessionsAreStoredTouchedAndExpired", func(t *testing.T) { testSessions(t, one(t)) })
	runFleet(t, one)
	runVigilance(t, one)
	runResponse(t, one)
}

func testAudit(t *testing.T, open Opener) {
	replicas := []state.Store{open(t), open(t)}
	var wg sync.WaitGroup
	for i, r := range replicas {
		for j := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := audit.Record(audit.WithActor(t.Context(), fmt.Sprintf("replica-%d", i)), r, "release.publish", fmt.Sprintf("demo-pump@1.%d.%d", i, j), map[string]int{"n": j})
				if err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	all, err := replicas[0].AuditEntries(t.Context(), 0, time.Time{}, 1000)
	if err != nil || len(all) != 20 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	if err := audit.Verify(all, audit.GenesisHash, 0); err != nil {
		t.Fatalf("a clean chain does not verify: %v", err)
	}
	tail, _ := replicas[1].AuditEntries(t.Context(), 15, time.Time{}, 1000)
	if len(tail) != 5 || tail[0].Seq != 16 {
		t.Fatalf("entries after 15: %d", len(tail))
	}
	// Tampering is named at the first broken entry.
	all[7].Subject = "demo-pump@6.6.6"
	var be *audit.BrokenError
	if err := audit.Verify(all, audit.GenesisHash, 0); !errors.As(err, &be) || be.Seq != 8 {
		t.Fatalf("tampered entry 8: %v", err)
	}
}

func testEvents(t *testing.T, s state.Store) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	evs := []state.DeviceEvent{
		{ID: "e1", DeviceID: "pump-1", Target: "demo-pump/a.img", Version: "1.1.0", State: "downloading", Time: t0},
		{ID: "e2", DeviceID: "pump-1", Target: "demo-pump/a.img", Version: "1.1.0", State: "committed", Time: t0.Add(time.Minute)},
		{ID: "e3", DeviceID: "pump-2", State: "deferred", Reason: "in clinical use", Time: t0},
	}
	n, err := s.AddDeviceEvents(t.Context(), evs)
	if err != nil || n != 3 {
		t.Fatalf("added %d, %v", n, err)
	}
	n, err = s.AddDeviceEvents(t.Context(), evs[:2]) // resent after a lost acknowledgement
	if err != nil || n != 0 {
		t.Fatalf("duplicates added %d, %v", n, err)
	}
	got, err := s.DeviceEvents(t.Context(), "pump-1", 10)
	if err != nil || len(got) != 2 || got[0].ID != "e1" || got[1].State != "committed" || !got[1].Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("pump-1 events %+v, %v", got, err)
	}
	if got[0].Received.IsZero() {
		t.Fatal("received time not set")
	}
	if got, _ := s.DeviceEvents(t.Context(), "pump-2", 10); len(got) != 1 || got[0].Reason != "in clinical use" {
		t.Fatalf("pump-2 events %+v", got)
	}
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func rv(role string, version int64) state.RoleVersion {
	return state.RoleVersion{
		Role: role, Version: version, SHA256: digest(fmt.Sprint(role, version)), Length: 100 + version,
		Expires: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func set(t *testing.T, s state.Store, v state.RoleVersion) error {
	t.Helper()
	return s.Publish(t.Context(), func(ctx context.Context, tx state.PublishTx) error {
		return tx.SetRoleVersion(ctx, v)
	})
}

func testMissing(t *testing.T, s state.Store) {
	_, err := s.RoleVersion(t.Context(), "snapshot")
	if !errors.Is(err, state.ErrNotFound) || !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	all, err := s.RoleVersions(t.Context())
	if err != nil || len(all) != 0 {
		t.Fatalf("empty store lists %v, %v", all, err)
	}
}

func testRoundTrip(t *testing.T, s state.Store) {
	want := rv("demo-pump", 3)
	err := s.Publish(t.Context(), func(ctx context.Context, tx state.PublishTx) error {
		if err := tx.SetRoleVersion(ctx, want); err != nil {
			return err
		}
		got, err := tx.RoleVersion(ctx, "demo-pump")
		if err != nil || got.Version != 3 {
			return fmt.Errorf("inside the transaction: %+v, %v", got, err)
		}
		all, err := tx.RoleVersions(ctx)
		if err != nil || len(all) != 1 || all[0].Role != "demo-pump" {
			return fmt.Errorf("RoleVersions inside the transaction: %+v, %v", all, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := set(t, s, rv("root", 1)); err != nil {
		t.Fatal(err)
	}
	got, err := s.RoleVersion(t.Context(), "demo-pump")
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != want.Role || got.Version != want.Version || got.SHA256 != want.SHA256 || got.Length != want.Length || !got.Expires.Equal(want.Expires) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got.UpdatedAt.IsZero() || time.Since(got.UpdatedAt) > time.Minute {
		t.Fatalf("UpdatedAt %v is not now", got.UpdatedAt)
	}
	all, err := s.RoleVersions(t.Context())
	if err != nil || len(all) != 2 || all[0].Role != "demo-pump" || all[1].Role != "root" {
		t.Fatalf("RoleVersions = %+v, %v", all, err)
	}
}

func testForward(t *testing.T, s state.Store) {
	if err := set(t, s, rv("snapshot", 5)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{5, 4, 1} {
		err := set(t, s, rv("snapshot", v))
		if !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("version %d after 5: got %v, want Conflict", v, err)
		}
	}
	if err := set(t, s, rv("snapshot", 7)); err != nil {
		t.Fatalf("skipping ahead to 7: %v", err)
	}
	got, _ := s.RoleVersion(t.Context(), "snapshot")
	if got.Version != 7 {
		t.Fatalf("version %d, want 7", got.Version)
	}
}

func testRollback(t *testing.T, s state.Store) {
	if err := set(t, s, rv("timestamp", 1)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("blob upload failed")
	err := s.Publish(t.Context(), func(ctx context.Context, tx state.PublishTx) error {
		if err := tx.SetRoleVersion(ctx, rv("timestamp", 2)); err != nil {
			return err
		}
		if err := tx.SetRoleVersion(ctx, rv("snapshot", 2)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Publish returned %v, want fn's error", err)
	}
	got, _ := s.RoleVersion(t.Context(), "timestamp")
	if got.Version != 1 {
		t.Fatalf("failed publish left timestamp at %d", got.Version)
	}
	if _, err := s.RoleVersion(t.Context(), "snapshot"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("failed publish left a snapshot row: %v", err)
	}
}

func testCancel(t *testing.T, s state.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	err := s.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
		if err := tx.SetRoleVersion(ctx, rv("targets", 1)); err != nil {
			return err
		}
		cancel()
		return ctx.Err()
	})
	if err == nil {
		t.Fatal("cancelled publish succeeded")
	}
	if _, err := s.RoleVersion(t.Context(), "targets"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("cancelled publish was kept: %v", err)
	}
}

func testInvalid(t *testing.T, s state.Store) {
	for _, v := range []state.RoleVersion{
		{Role: "", Version: 1, SHA256: digest("x"), Length: 1},
		{Role: "r", Version: 0, SHA256: digest("x"), Length: 1},
		{Role: "r", Version: 1, SHA256: "abc", Length: 1},
		{Role: "r", Version: 1, SHA256: digest("x"), Length: 0},
	} {
		if err := set(t, s, v); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("%+v: got %v, want Invalid", v, err)
		}
	}
}

// testConcurrent has workers on two handles ("replicas") each read the
// snapshot version and write the next one, as a publish does. Serialized
// publishes produce every version exactly once and never conflict.
func testConcurrent(t *testing.T, open Opener) {
	replicas := []state.Store{open(t), open(t)}
	const workers, rounds = 4, 15
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, workers*len(replicas))
	for r := range replicas {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					err := replicas[r].Publish(t.Context(), func(ctx context.Context, tx state.PublishTx) error {
						next := int64(1)
						cur, err := tx.RoleVersion(ctx, "snapshot")
						if err == nil {
							next = cur.Version + 1
						} else if !errors.Is(err, state.ErrNotFound) {
							return err
						}
						if err := tx.SetRoleVersion(ctx, rv("snapshot", next)); err != nil {
							return err
						}
						mu.Lock()
						seen[next]++
						mu.Unlock()
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent publish: %v", err)
	}
	total := int64(workers * len(replicas) * rounds)
	got, err := replicas[0].RoleVersion(t.Context(), "snapshot")
	if err != nil || got.Version != total {
		t.Fatalf("final version %d (%v), want %d", got.Version, err, total)
	}
	for v := int64(1); v <= total; v++ {
		if seen[v] != 1 {
			t.Fatalf("version %d was committed %d times", v, seen[v])
		}
	}
}

func testReopen(t *testing.T, open Opener) {
	s := open(t)
	if err := set(t, s, rv("root", 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again := open(t) // migrations run again: they must be idempotent
	got, err := again.RoleVersion(t.Context(), "root")
	if err != nil || got.Version != 2 {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
}
