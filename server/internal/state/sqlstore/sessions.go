package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/vigil-ota/vigil/server/internal/state"
)

// CreateSession implements state.SessionStore.
func (s *Store) CreateSession(ctx context.Context, ss state.Session) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind("INSERT INTO sessions (id_hash, token_id, csrf, created_ms, seen_ms) VALUES (?, ?, ?, ?, ?)"),
		ss.IDHash, ss.TokenID, ss.CSRF, ms(ss.Created), ms(ss.Seen))
	return s.fail("create session", err)
}

// Session implements state.SessionStore.
func (s *Store) Session(ctx context.Context, idHash string) (state.Session, error) {
	ss := state.Session{IDHash: idHash}
	var created, seen int64
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT token_id, csrf, created_ms, seen_ms FROM sessions WHERE id_hash = ?"), idHash).
		Scan(&ss.TokenID, &ss.CSRF, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return ss, state.NotFound("session")
	}
	ss.Created, ss.Seen = fromMS(created), fromMS(seen)
	return ss, s.fail("read session", err)
}

// TouchSession implements state.SessionStore.
func (s *Store) TouchSession(ctx context.Context, idHash string, seen time.Time) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind("UPDATE sessions SET seen_ms = ? WHERE id_hash = ?"), ms(seen), idHash)
	return s.fail("touch session", err)
}

// DeleteSession implements state.SessionStore.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	_, err := s.w.ExecContext(ctx, s.d.rebind("DELETE FROM sessions WHERE id_hash = ?"), idHash)
	return s.fail("delete session", err)
}

// DeleteSessionsBefore implements state.SessionStore.
func (s *Store) DeleteSessionsBefore(ctx context.Context, created, seen time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, s.d.rebind("DELETE FROM sessions WHERE created_ms < ? OR seen_ms < ?"), ms(created), ms(seen))
	if err != nil {
		return 0, s.fail("delete sessions", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
