package statetest

import (
	"context"
	"testing"

	"github.com/vigil-ota/vigil/server/internal/state"
)

// BenchPublish measures one publish transaction: take the lock, read the
// snapshot version, write the next one, commit.
func BenchPublish(b *testing.B, s state.Store) {
	ctx := context.Background()
	for b.Loop() {
		err := s.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
			next := int64(1)
			if cur, err := tx.RoleVersion(ctx, "snapshot"); err == nil {
				next = cur.Version + 1
			}
			return tx.SetRoleVersion(ctx, rv("snapshot", next))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
