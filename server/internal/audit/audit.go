// Package audit is the append-only, hash-chained record of every mutating
// action (publishes, rollout changes, approvals, token and device changes).
// Each entry carries the hash of the one before it, so changing, removing or
// reordering any entry breaks every hash after it; Verify names the first
// broken entry.
//
// Threat model: the chain makes tampering evident to anyone holding an
// exported copy or a recent head hash; it does not stop an attacker with
// write access to the database from rewriting the whole chain. Export it
// regularly (`vigil audit export`) to storage the server cannot write.
package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vigil-ota/vigil/api/auditchain"
)

// Entry, GenesisHash, Verify and BrokenError are the shared chain format.
type (
	Entry       = auditchain.Entry
	BrokenError = auditchain.BrokenError
)

// GenesisHash is the previous hash of the first entry.
var GenesisHash = auditchain.GenesisHash

// Verify checks a run of entries; see auditchain.Verify.
func Verify(entries []Entry, prevHash string, prevSeq int64) error {
	return auditchain.Verify(entries, prevHash, prevSeq)
}

// Recorder appends entries; the state store implements it.
type Recorder interface {
	AppendAudit(ctx context.Context, e Entry) (Entry, error)
}

type actorKey struct{}

// WithActor records who acts in ctx (set by the HTTP layer).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor in ctx, or "system".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}

// Record appends an action with details marshalled to JSON.
func Record(ctx context.Context, r Recorder, action, subject string, details any) (Entry, error) {
	var raw json.RawMessage
	if details != nil {
		b, err := json.Marshal(details)
		if err != nil {
			return Entry{}, err
		}
		raw = b
	}
	return r.AppendAudit(ctx, Entry{Time: time.Now().UTC(), Actor: ActorFrom(ctx), Action: action, Subject: subject, Details: raw})
}
