package fleet

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Device sessions (api/devicesig's session.go has the protocol and what
// it protects against). The ticket is this package's own:
//
//	key period(8) | nonce(12) | AES-256-GCM(version(1) | expires Unix seconds(8) | device ed25519 key(32) | session key(32) | device id)
//
// under a key every replica shares (state.SecretStore), so any replica
// admits a session any replica opened, with no lookup. Keys rotate by
// themselves: each TicketKeyPeriod has its own (made by whichever replica
// needs it first); tickets are sealed under the current period's key and
// admitted under the current or the previous one, so a key is retired at
// most two periods after it was made, and a session (SessionLifetime, far
// shorter than a period) never outlives the key that sealed it.
const (
	// SessionLifetime is how long a session is admitted after it opened.
	// Agents poll hourly by default (agent poll_interval), so a day-long
	// session spares ~24 signature checks per device; a session ends at
	// once on decommissioning or a changed key whatever its age.
	SessionLifetime = 24 * time.Hour
	// TicketKeyPeriod is how long one ticket key seals tickets.
	TicketKeyPeriod = 7 * 24 * time.Hour
	// TicketKeyName names the ticket keys in the shared secret store
	// (TicketKeyName/PERIOD).
	TicketKeyName = "device-session-ticket-key"

	ticketVersion = 1
	ticketAAD     = "vigil-session-ticket-v1/"
	ticketFixed   = 1 + 8 + ed25519.PublicKeySize + devicesig.SessionKeySize
)

// tickets seals and opens session tickets; a period's key is read from
// the store on first use (and again after a failed read).
type tickets struct {
	store state.SecretStore
	mu    sync.Mutex
	aeads map[int64]cipher.AEAD // by key period; only the current and the previous one
}

type ticket struct {
	deviceID string
	devKey   ed25519.PublicKey
	key      []byte
	expires  time.Time
}

// period is the ticket key period of t.
func period(t time.Time) int64 { return t.Unix() / int64(TicketKeyPeriod/time.Second) }

func (t *tickets) cipher(ctx context.Context, p int64, now time.Time) (cipher.AEAD, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.aeads[p]; ok {
		return a, nil
	}
	if t.store == nil {
		return nil, apperr.New(apperr.Unavailable, "device sessions are not configured on this server")
	}
	candidate := make([]byte, 32)
	rand.Read(candidate)
	k, err := t.store.SharedSecret(ctx, TicketKeyName+"/"+strconv.FormatInt(p, 10), candidate, now)
	if err != nil {
		return nil, err
	}
	if len(k) != 32 {
		return nil, apperr.New(apperr.Internal, "the stored session ticket key is %d bytes, not 32", len(k))
	}
	block, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(block)
	cur := period(now)
	for q := range t.aeads {
		if q < cur-1 {
			delete(t.aeads, q) // retired
		}
	}
	if t.aeads == nil {
		t.aeads = map[int64]cipher.AEAD{}
	}
	t.aeads[p] = a
	return a, nil
}

func ticketAD(p int64) []byte { return []byte(ticketAAD + strconv.FormatInt(p, 10)) }

func (t *tickets) seal(ctx context.Context, tk ticket, now time.Time) (string, error) {
	p := period(now)
	aead, err := t.cipher(ctx, p, now)
	if err != nil {
		return "", err
	}
	plain := make([]byte, 0, ticketFixed+len(tk.deviceID))
	plain = append(plain, ticketVersion)
	plain = binary.BigEndian.AppendUint64(plain, uint64(tk.expires.Unix()))
	plain = append(plain, tk.devKey...)
	plain = append(plain, tk.key...)
	plain = append(plain, tk.deviceID...)
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+aead.NonceSize()+len(plain)+aead.Overhead()), uint64(p))
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out = append(out, nonce...)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(out, nonce, plain, ticketAD(p))), nil
}

// open returns the ticket's contents; a ticket that is malformed, sealed
// under a retired key, or not sealed by this deployment, is refused.
func (t *tickets) open(ctx context.Context, s string, now time.Time) (ticket, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 8 {
		return ticket{}, sessionInvalid("the session ticket is malformed")
	}
	p := int64(binary.BigEndian.Uint64(raw))
	if cur := period(now); p != cur && p != cur-1 {
		return ticket{}, sessionInvalid("the session ticket was sealed under a retired key (or is corrupt); open a new session")
	}
	aead, err := t.cipher(ctx, p, now)
	if err != nil {
		return ticket{}, err
	}
	raw = raw[8:]
	if len(raw) < aead.NonceSize() {
		return ticket{}, sessionInvalid("the session ticket is malformed")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], ticketAD(p))
	if err != nil || len(plain) <= ticketFixed || plain[0] != ticketVersion {
		return ticket{}, sessionInvalid("the session ticket was not issued by this deployment (or is corrupt)")
	}
	q := plain[1:]
	tk := ticket{expires: time.Unix(int64(binary.BigEndian.Uint64(q)), 0)}
	q = q[8:]
	tk.devKey, q = ed25519.PublicKey(q[:ed25519.PublicKeySize]), q[ed25519.PublicKeySize:]
	tk.key, q = q[:devicesig.SessionKeySize], q[devicesig.SessionKeySize:]
	tk.deviceID = string(q)
	return tk, nil
}

func sessionInvalid(format string, args ...any) error {
	return apperr.New(apperr.Unauthorized, format, args...).WithCode(api.CodeSessionInvalid)
}

// OpenSession opens a session for a device whose request was signed with
// its key (never from within another session: a session always starts
// from the device key, so a re-registered key ends every old session).
func (a *DeviceAuth) OpenSession(ctx context.Context, dev Authenticated, in api.SessionRequest) (api.Session, error) {
	if dev.ViaSession {
		return api.Session{}, unauthenticated("a session is opened by a request signed with the device key, not from another session")
	}
	devPub, ok := devicesig.ParseX25519(in.PublicKey)
	if !ok {
		return api.Session{}, apperr.New(apperr.Invalid, "public_key is not the base64 of a 32-byte X25519 public key")
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return api.Session{}, err
	}
	shared, err := priv.ECDH(devPub)
	if err != nil { // a low-order point: no shared secret
		return api.Session{}, apperr.New(apperr.Invalid, "public_key is not usable for X25519: %v", err)
	}
	key, err := devicesig.SessionKey(shared, dev.ID, devPub, priv.PublicKey())
	if err != nil {
		return api.Session{}, err
	}
	registered, _ := DecodePublicKey(dev.PublicKey)
	now := a.clock.Now()
	tk, err := a.tickets.seal(ctx, ticket{deviceID: dev.ID, devKey: registered, key: key, expires: now.Add(SessionLifetime)}, now)
	if err != nil {
		return api.Session{}, err
	}
	return api.Session{ServerPublicKey: base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes()), Ticket: tk,
		ExpiresInSeconds: int64(SessionLifetime / time.Second)}, nil
}

// verifySession checks a session request's ticket and MAC for dev.
func (a *DeviceAuth) verifySession(ctx context.Context, r DeviceRequest, dev state.Device, ts int64) error {
	now := a.clock.Now()
	tk, err := a.tickets.open(ctx, r.Session, now)
	if err != nil {
		return err
	}
	if tk.deviceID != dev.ID {
		return sessionInvalid("the session ticket belongs to another device")
	}
	if !now.Before(tk.expires) {
		return sessionInvalid("the session expired at %s; open a new one", tk.expires.UTC().Format(time.RFC3339))
	}
	registered, _ := DecodePublicKey(dev.PublicKey)
	if subtle.ConstantTimeCompare(registered, tk.devKey) != 1 {
		return sessionInvalid("the session was opened with a key the device no longer has registered")
	}
	if !devicesig.VerifySessionMAC(tk.key, r.Method, r.Path, ts, r.Nonce, r.Body, r.Signature) {
		return unauthenticated("the request's session MAC does not verify")
	}
	return nil
}
