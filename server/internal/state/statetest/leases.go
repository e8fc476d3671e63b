package statetest

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// testLeases: on two handles of one database ("replicas"), a lease is held
// by one holder at a time, renewed by its holder, taken over once it
// expired, and handed back on release.
func testLeases(t *testing.T, open Opener) {
	a, b := open(t), open(t)
	ctx := t.Context()
	now := time.Now()
	ttl := 30 * time.Second
	if ok, err := a.TryLease(ctx, "rollout-controller", "replica-a", now, ttl); err != nil || !ok {
		t.Fatalf("a free lease: %v %v", ok, err)
	}
	if ok, err := b.TryLease(ctx, "rollout-controller", "replica-b", now.Add(time.Second), ttl); err != nil || ok {
		t.Fatalf("a held lease was taken by another replica: %v %v", ok, err)
	}
	if ok, _ := a.TryLease(ctx, "rollout-controller", "replica-a", now.Add(20*time.Second), ttl); !ok {
		t.Fatal("the holder could not renew")
	}
	if ok, _ := b.TryLease(ctx, "rollout-controller", "replica-b", now.Add(40*time.Second), ttl); ok {
		t.Fatal("a renewed lease was taken before it expired")
	}
	if ok, _ := b.TryLease(ctx, "rollout-controller", "replica-b", now.Add(51*time.Second), ttl); !ok {
		t.Fatal("an expired lease was not taken over")
	}
	if ok, _ := a.TryLease(ctx, "other-job", "replica-a", now, ttl); !ok {
		t.Fatal("leases of different jobs are independent")
	}
	if err := b.ReleaseLease(ctx, "rollout-controller", "replica-b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.TryLease(ctx, "rollout-controller", "replica-a", now.Add(52*time.Second), ttl); !ok {
		t.Fatal("a released lease was not free")
	}

	// Many replicas racing for one lease at the same moment: exactly one wins.
	var wins atomic.Int32
	at := now.Add(time.Hour)
	atOnce(8, a, b, func(i int, s state.Store) {
		ok, err := s.TryLease(ctx, "race", fmt.Sprintf("replica-%d", i), at, ttl)
		if err != nil {
			t.Error(err)
		}
		if ok {
			wins.Add(1)
		}
	})
	if wins.Load() != 1 {
		t.Fatalf("%d replicas hold one lease", wins.Load())
	}
}

// testTokens: tokens are stored without their secret, found by id,
// listed, and revoked once; a missing one is NotFound.
func testTokens(t *testing.T, s state.Store) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	tok := state.Token{ID: "a1b2c3", SecretHash: "hash", Name: "it-st-mary", Role: "site-it", Sites: []string{"st-mary", "north"}, Expires: exp}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok); err == nil {
		t.Fatal("a token id was created twice")
	}
	got, err := s.Token(ctx, "a1b2c3")
	if err != nil || got.SecretHash != "hash" || got.Role != "site-it" || len(got.Sites) != 2 || !got.Expires.Equal(exp) || got.Revoked {
		t.Fatalf("token %+v %v", got, err)
	}
	if _, err := s.Token(ctx, "nope"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("missing token: %v", err)
	}
	if err := s.RevokeToken(ctx, "a1b2c3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Token(ctx, "a1b2c3"); !got.Revoked {
		t.Fatal("revoked token is not revoked")
	}
	if err := s.RevokeToken(ctx, "nope"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("revoking a missing token: %v", err)
	}
	all, err := s.Tokens(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("tokens %v %v", all, err)
	}
}

func testSessions(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	for i, id := range []string{"h1", "h2", "h3"} {
		if err := s.CreateSession(ctx, state.Session{IDHash: id, TokenID: "t1", CSRF: "c" + id, Created: now.Add(-time.Duration(i) * time.Hour), Seen: now.Add(-time.Duration(i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, state.Session{IDHash: "h1", TokenID: "t2"}); err == nil {
		t.Fatal("a session id was reused")
	}
	got, err := s.Session(ctx, "h1")
	if err != nil || got.TokenID != "t1" || got.CSRF != "ch1" || !got.Created.Equal(now) {
		t.Fatalf("session %+v %v", got, err)
	}
	if err := s.TouchSession(ctx, "h2", now); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteSessionsBefore(ctx, now.Add(-90*time.Minute), now.Add(-30*time.Minute))
	if err != nil || n != 1 { // h3 is too old; h2 was touched
		t.Fatalf("expired sessions deleted: %d %v", n, err)
	}
	if err := s.DeleteSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "h1"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	for id, want := range map[string]bool{"h1": false, "h2": true, "h3": false} {
		if _, err := s.Session(ctx, id); (err == nil) != want {
			t.Errorf("session %s present %v, want %v (%v)", id, err == nil, want, err)
		}
	}
}

// testSecrets: replicas racing to store a shared secret all get the value
// that was stored first; it survives, and names are independent.
func testSecrets(t *testing.T, open Opener) {
	a, b := open(t), open(t)
	ctx := t.Context()
	now := time.Now()
	got := make([][]byte, 8)
	atOnce(len(got), a, b, func(i int, s state.Store) {
		v, err := s.SharedSecret(ctx, "ticket-key", []byte(fmt.Sprintf("candidate-%d", i)), now)
		if err != nil {
			t.Error(err)
		}
		got[i] = v
	})
	for i, v := range got {
		if !bytes.Equal(v, got[0]) || !bytes.HasPrefix(v, []byte("candidate-")) {
			t.Fatalf("replica call %d got %q, call 0 got %q", i, v, got[0])
		}
	}
	if v, err := b.SharedSecret(ctx, "ticket-key", []byte("later"), now.Add(time.Hour)); err != nil || !bytes.Equal(v, got[0]) {
		t.Fatalf("a later call replaced the secret: %q %v", v, err)
	}
	if v, err := a.SharedSecret(ctx, "other", []byte("\x00binary\xff"), now); err != nil || string(v) != "\x00binary\xff" {
		t.Fatalf("another name: %q %v", v, err)
	}
}

// testServed: two replicas add served bytes at once; the totals are the sums,
// per release and kind.
func testServed(t *testing.T, open Opener) {
	a, b := open(t), open(t)
	ctx := t.Context()
	atOnce(10, a, b, func(_ int, s state.Store) {
		if err := s.AddServed(ctx, []state.Served{{Product: "demo-pump", Version: "1.1.0", Kind: "full", Bytes: 1000, Requests: 1},
			{Product: "demo-pump", Version: "1.1.0", Kind: "delta", Bytes: 10, Requests: 2}, {Product: "demo-pump", Version: "1.0.0", Kind: "full", Bytes: 1, Requests: 1}}); err != nil {
			t.Error(err)
		}
	})
	got, err := b.ServedOf(ctx, "demo-pump", "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if got["full"].Bytes != 10000 || got["full"].Requests != 10 || got["delta"].Bytes != 100 || got["delta"].Requests != 20 || len(got) != 2 {
		t.Fatalf("totals: %+v", got)
	}
	if none, err := a.ServedOf(ctx, "demo-pump", "9.9.9"); err != nil || len(none) != 0 {
		t.Fatalf("a release never served: %+v %v", none, err)
	}
}

// atOnce runs fn n times at once, alternately on the two store handles
// ("replicas"), and waits for all of them.
func atOnce(n int, a, b state.Store, fn func(i int, s state.Store)) {
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, s)
		}()
	}
	wg.Wait()
}
