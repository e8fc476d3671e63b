package sqlstore

import (
	"context"
	"time"

	"github.com/vigil-ota/vigil/server/internal/state"
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

// AddServed implements state.ServedStore, in one transaction.
func (s *Store) AddServed(ctx context.Context, add []state.Served) error {
	if len(add) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("add served bytes", err)
	}
	defer tx.Rollback()
	q := s.d.rebind(`INSERT INTO served_bytes (product, version, kind, bytes, requests) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (product, version, kind) DO UPDATE SET bytes = served_bytes.bytes + excluded.bytes, requests = served_bytes.requests + excluded.requests`)
	for _, a := range add {
		if _, err := tx.ExecContext(ctx, q, a.Product, a.Version, a.Kind, a.Bytes, a.Requests); err != nil {
			return s.fail("add served bytes", err)
		}
	}
	return s.fail("add served bytes", tx.Commit())
}

// ServedOf implements state.ServedStore.
func (s *Store) ServedOf(ctx context.Context, product, version string) (map[string]state.Served, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT kind, bytes, requests FROM served_bytes WHERE product = ? AND version = ?"), product, version)
	if err != nil {
		return nil, s.fail("read served bytes", err)
	}
	defer rows.Close()
	out := map[string]state.Served{}
	for rows.Next() {
		v := state.Served{Product: product, Version: version}
		if err := rows.Scan(&v.Kind, &v.Bytes, &v.Requests); err != nil {
			return nil, s.fail("read served bytes", err)
		}
		out[v.Kind] = v
	}
	return out, s.fail("read served bytes", rows.Err())
}
