package operator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Console session limits, with their units.
const (
	// SessionIdle ends a session unused this long.
	SessionIdle = 30 * time.Minute
	// SessionMax ends a session this long after sign-in, used or not.
	SessionMax = 12 * time.Hour
	// sessionTouchEvery: a session's last use is written at most this
	// often (every request would be a database write).
	sessionTouchEvery = time.Minute
	// sessionIDBytes and csrfBytes are the random bytes of a session id
	// and of its CSRF token.
	sessionIDBytes = 32
	csrfBytes      = 32
)

// Session is a signed-in console session: its secret id (the cookie, never
// stored: the store keeps its SHA-256), its CSRF token and whose it is.
type Session struct {
	ID        string
	CSRF      string
	Principal Principal
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// SignIn exchanges an operator token for a session (audited). The session
// lives as long as the token stays valid, at most SessionMax, and ends
// after SessionIdle unused.
func (s *Service) SignIn(ctx context.Context, bearer string) (Session, error) {
	p, err := s.Authenticate(ctx, bearer)
	if err != nil {
		return Session{}, err
	}
	ss := Session{ID: randomHex(sessionIDBytes), CSRF: randomHex(csrfBytes), Principal: p}
	now := s.now()
	if err := s.st.CreateSession(ctx, state.Session{IDHash: hashSecret(ss.ID), TokenID: p.TokenID, CSRF: ss.CSRF, Created: now, Seen: now}); err != nil {
		return Session{}, err
	}
	_, err = audit.Record(audit.WithActor(ctx, p.Name), s.st, "console.sign_in", p.TokenID, map[string]any{"role": p.Role, "sites": p.Sites})
	return ss, err
}

var errNoSession = apperr.New(apperr.Unauthorized, "not signed in, or the session ended: sign in again")

// SessionFor returns the live session of a session id: not idle too long,
// not too old, and its token still valid (a revoked or expired token, or a
// retired bootstrap token, ends every session it made).
func (s *Service) SessionFor(ctx context.Context, id string) (Session, error) {
	if len(id) != 2*sessionIDBytes {
		return Session{}, errNoSession
	}
	h := hashSecret(id)
	st, err := s.st.Session(ctx, h)
	if apperr.Is(err, apperr.NotFound) {
		return Session{}, errNoSession
	}
	if err != nil {
		return Session{}, err
	}
	now := s.now()
	if now.Sub(st.Created) >= SessionMax || now.Sub(st.Seen) >= SessionIdle {
		s.st.DeleteSession(ctx, h)
		return Session{}, errNoSession
	}
	p, err := s.principalOfToken(ctx, st.TokenID)
	if err != nil {
		s.st.DeleteSession(ctx, h)
		return Session{}, err
	}
	if now.Sub(st.Seen) >= sessionTouchEvery {
		if err := s.st.TouchSession(ctx, h, now); err != nil {
			return Session{}, err
		}
	}
	return Session{ID: id, CSRF: st.CSRF, Principal: p}, nil
}

func (s *Service) principalOfToken(ctx context.Context, tokenID string) (Principal, error) {
	if tokenID == BootstrapTokenID {
		admin, err := s.AdminTokenExists(ctx)
		if err != nil {
			return Principal{}, err
		}
		if s.bootstrap == "" || admin != "" {
			return Principal{}, apperr.New(apperr.Unauthorized, "the bootstrap token is retired; sign in with a token of your own")
		}
		return bootstrapPrincipal, nil
	}
	t, err := s.st.Token(ctx, tokenID)
	if apperr.Is(err, apperr.NotFound) {
		return Principal{}, errNoSession
	}
	if err != nil {
		return Principal{}, err
	}
	return s.valid(t)
}

// CheckCSRF reports whether a form's CSRF token is the session's.
func (ss Session) CheckCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(ss.CSRF)) == 1
}

// SignOut ends a session (audited).
func (s *Service) SignOut(ctx context.Context, ss Session) error {
	if err := s.st.DeleteSession(ctx, hashSecret(ss.ID)); err != nil {
		return err
	}
	_, err := audit.Record(audit.WithActor(ctx, ss.Principal.Name), s.st, "console.sign_out", ss.Principal.TokenID, nil)
	return err
}

// PurgeSessions deletes the sessions that can no longer be used (a
// periodic job).
func (s *Service) PurgeSessions(ctx context.Context) (int, error) {
	now := s.now()
	return s.st.DeleteSessionsBefore(ctx, now.Add(-SessionMax), now.Add(-SessionIdle))
}
