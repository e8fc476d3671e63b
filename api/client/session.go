package client

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
)

// Device session timing, with units.
const (
	// SessionRenewBefore opens a new session this long before the current
	// one expires, so a request never races its session's end.
	SessionRenewBefore = 5 * time.Minute
	// MaxSessionLifetime bounds how long the client keeps a session,
	// whatever the server says.
	MaxSessionLifetime = 48 * time.Hour
	// SessionRetryUnsupported: after a server answered that it has no
	// sessions (an older server), sign each request for this long before
	// asking again.
	SessionRetryUnsupported = time.Hour
)

// deviceSession is a device's session, shared by the clients of one
// device (WithBase); its mutex makes concurrent requests wait for one
// opening instead of each opening their own.
type deviceSession struct {
	mu          sync.Mutex
	open        *openSession
	unsupported time.Time // until then, sign each request
}

type openSession struct {
	ticket  string
	key     []byte
	renewAt time.Time
}

// current returns the live session, opening one if needed; nil (and no
// error) means the server has no sessions and the request is to be signed.
func (s *deviceSession) current(ctx context.Context, c *Client) (*openSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := c.now()
	if now.Before(s.unsupported) {
		return nil, nil
	}
	if s.open != nil && now.Before(s.open.renewAt) {
		return s.open, nil
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var out api.Session
	err = c.call(ctx, http.MethodPost, api.RouteDeviceSession, api.SessionRequest{PublicKey: base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes())}, &out)
	var ae *api.Error
	if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
		s.open, s.unsupported = nil, now.Add(SessionRetryUnsupported)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	srv, ok := devicesig.ParseX25519(out.ServerPublicKey)
	if !ok || out.Ticket == "" || len(out.Ticket) > devicesig.MaxTicketLength || out.ExpiresInSeconds <= 0 {
		return nil, fmt.Errorf("%s: the server's session answer is malformed", api.RouteDeviceSession)
	}
	shared, err := priv.ECDH(srv)
	if err != nil {
		return nil, fmt.Errorf("%s: the server's X25519 key is unusable: %w", api.RouteDeviceSession, err)
	}
	key, err := devicesig.SessionKey(shared, c.deviceID, priv.PublicKey(), srv)
	if err != nil {
		return nil, err
	}
	life := MaxSessionLifetime
	if out.ExpiresInSeconds < int64(MaxSessionLifetime/time.Second) {
		life = time.Duration(out.ExpiresInSeconds) * time.Second
	}
	s.open = &openSession{ticket: out.Ticket, key: key, renewAt: now.Add(life - min(SessionRenewBefore, life/2))}
	return s.open, nil
}

// drop forgets ss (if it is still the current session), so the next
// request opens a new one.
func (s *deviceSession) drop(ss *openSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == ss {
		s.open = nil
	}
}
