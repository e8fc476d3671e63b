package sqlstore

import (
	"context"
	"time"
)

// TryLease implements state.LeaseStore: one statement that takes a free or
// expired lease, or renews the holder's own; both backends run it
// atomically (SQLite: the single writer; PostgreSQL: the row's
// conflict handling), so two replicas never both hold a lease.
func (s *Store) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.d.rebind(`INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
		WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?`),
		name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, s.fail("take lease", err)
	}
	n, err := res.RowsAffected()
	return n > 0, s.fail("take lease", err)
}

// ReleaseLease implements state.LeaseStore.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind("DELETE FROM leases WHERE name = ? AND holder = ?"), name, holder)
	return s.fail("release lease", err)
}

// SharedSecret implements state.SecretStore: insert unless present, then
// read, so every replica reads the first insert's value.
func (s *Store) SharedSecret(ctx context.Context, name string, candidate []byte, now time.Time) ([]byte, error) {
	if _, err := s.w.ExecContext(ctx, s.d.rebind("INSERT INTO server_secrets (name, value, created_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"),
		name, candidate, now.UnixMilli()); err != nil {
		return nil, s.fail("store secret", err)
	}
	var v []byte
	err := s.w.QueryRowContext(ctx, s.d.rebind("SELECT value FROM server_secrets WHERE name = ?"), name).Scan(&v)
	return v, s.fail("read secret", err)
}
