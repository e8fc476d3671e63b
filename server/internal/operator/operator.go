// Package operator authenticates people and pipelines with API tokens and
// decides what each role may do. Deny by default: a route without a
// permission, a token without the permission, or a site-scoped token acting
// on another site is refused.
//
// Tokens look like "vgl_<id>_<secret>". Only SHA-256(secret) is stored; the
// secret is shown once, at creation. Tokens expire and can be revoked. The
// bootstrap token from the server's configuration acts as an admin, for
// setting up the first real tokens; every use is audited as
// "bootstrap-token". It retires itself: while any valid (unrevoked,
// unexpired) admin token exists, the bootstrap token is refused, so a
// long-lived shared secret in a configuration file does not stay admin for
// ever (docs/operations.md, "The bootstrap ceremony").
package operator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Roles.
const (
	RoleAdmin   = "admin"
	RoleRelease = "release"
	RoleSiteIT  = "site-it"
	RoleAuditor = "auditor"
)

// Permission is one kind of action.
type Permission string

// Permissions.
const (
	PermRepoWrite     Permission = "repo.write"     // publish, upload, repository keys
	PermFleetWrite    Permission = "fleet.write"    // register, import, decommission devices
	PermSiteWrite     Permission = "site.write"     // sites, windows, caps, policy (site-scoped)
	PermRolloutWrite  Permission = "rollout.write"  // create, pause, resume, abort, halt releases
	PermRolloutReview Permission = "rollout.review" // approve, revoke, defer (site-scoped)
	PermRead          Permission = "read"           // rollout status, device events, sites (site-scoped)
	PermAuditRead     Permission = "audit.read"     // the audit log
	PermTokens        Permission = "tokens.admin"   // create, list, revoke tokens
	// PermVigilanceWrite imports vulnerability feeds; PermTriage records
	// triage decisions on findings (device makers' security officers).
	PermVigilanceWrite Permission = "vigilance.write"
	PermTriage         Permission = "vigilance.triage"
	// Incident response: disclosure cases (read, manage), incidents (read,
	// act), customer notices (send; acknowledge for a site), evidence.
	PermCVDRead       Permission = "cvd.read"
	PermCVDManage     Permission = "cvd.manage"
	PermIncidentRead  Permission = "incident.read"
	PermIncidentWrite Permission = "incident.write"
	PermNoticeWrite   Permission = "notice.write"
	PermNoticeAck     Permission = "notice.ack" // site-scoped
	PermEvidence      Permission = "evidence.export"
)

var rolePerms = map[string][]Permission{
	RoleAdmin: {PermRepoWrite, PermFleetWrite, PermSiteWrite, PermRolloutWrite, PermRolloutReview, PermRead, PermAuditRead, PermTokens, PermVigilanceWrite, PermTriage,
		PermCVDRead, PermCVDManage, PermIncidentRead, PermIncidentWrite, PermNoticeWrite, PermNoticeAck, PermEvidence},
	RoleRelease: {PermRepoWrite, PermFleetWrite, PermRolloutWrite, PermRead, PermVigilanceWrite, PermTriage,
		PermCVDRead, PermCVDManage, PermIncidentRead, PermIncidentWrite, PermNoticeWrite},
	RoleSiteIT:  {PermSiteWrite, PermRolloutReview, PermRead, PermNoticeAck},
	RoleAuditor: {PermRead, PermAuditRead, PermCVDRead, PermIncidentRead, PermEvidence},
}

// Roles lists the roles.
func Roles() []string { return []string{RoleAdmin, RoleRelease, RoleSiteIT, RoleAuditor} }

// Limits, with their units.
const (
	MaxTokenLifetime     = 366 * 24 * time.Hour
	MaxTokenSites        = 256
	DefaultTokenLifetime = 90 * 24 * time.Hour
	tokenPrefix          = "vgl_"
)

// Principal is an authenticated operator.
type Principal struct {
	Name  string // audit actor
	Role  string
	Sites []string // site-it only
	// TokenID is the token that authenticated (BootstrapTokenID for the
	// bootstrap token).
	TokenID string
}

// BootstrapTokenID names the bootstrap token in sessions.
const BootstrapTokenID = "bootstrap"

// Can reports whether p holds perm.
func (p Principal) Can(perm Permission) bool { return slices.Contains(rolePerms[p.Role], perm) }

// SiteScoped reports whether p is limited to its listed sites.
func (p Principal) SiteScoped() bool { return p.Role == RoleSiteIT }

// CanSite reports whether p may act on site.
func (p Principal) CanSite(site string) bool {
	return !p.SiteScoped() || slices.Contains(p.Sites, site)
}

// Store is what the service keeps: tokens, and the audit log it records
// token changes in.
type Store interface {
	state.TokenStore
	state.SessionStore
	audit.Recorder
}

// Service authenticates tokens.
type Service struct {
	st        Store
	bootstrap string
	now       func() time.Time
}

// New returns the service; bootstrap may be empty.
func New(st Store, bootstrap string) *Service {
	return &Service{st: st, bootstrap: bootstrap, now: time.Now}
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Authenticate resolves a bearer token.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	unauth := apperr.New(apperr.Unauthorized, "a valid bearer token is required (set VIGIL_TOKEN)")
	if bearer == "" {
		return Principal{}, unauth
	}
	if s.bootstrap != "" && subtle.ConstantTimeCompare([]byte(bearer), []byte(s.bootstrap)) == 1 {
		admin, err := s.AdminTokenExists(ctx)
		if err != nil {
			return Principal{}, err
		}
		if admin != "" {
			return Principal{}, apperr.New(apperr.Unauthorized, "the bootstrap token is retired: admin token %s exists; use an admin token", admin).WithCode(api.CodeBootstrapRetired)
		}
		return bootstrapPrincipal, nil
	}
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || id == "" || secret == "" {
		return Principal{}, unauth
	}
	t, err := s.st.Token(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return Principal{}, unauth
	}
	if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(t.SecretHash)) != 1 {
		return Principal{}, unauth
	}
	return s.valid(t)
}

var bootstrapPrincipal = Principal{Name: "bootstrap-token", Role: RoleAdmin, TokenID: BootstrapTokenID}

// valid returns the principal of a token that is neither revoked nor
// expired.
func (s *Service) valid(t state.Token) (Principal, error) {
	if t.Revoked {
		return Principal{}, apperr.New(apperr.Unauthorized, "token %s is revoked", t.ID)
	}
	if !s.now().Before(t.Expires) {
		return Principal{}, apperr.New(apperr.Unauthorized, "token %s expired at %s", t.ID, t.Expires.Format(time.RFC3339))
	}
	return Principal{Name: "token:" + t.ID + ":" + t.Name, Role: t.Role, Sites: t.Sites, TokenID: t.ID}, nil
}

// AdminTokenExists returns the id of a valid admin token ("" when none):
// while one exists the bootstrap token is retired.
func (s *Service) AdminTokenExists(ctx context.Context) (string, error) {
	if s.st == nil { // bootstrap-only (tests of the HTTP layer)
		return "", nil
	}
	ts, err := s.st.Tokens(ctx)
	if err != nil {
		return "", err
	}
	now := s.now()
	for _, t := range ts {
		if t.Role == RoleAdmin && !t.Revoked && now.Before(t.Expires) {
			return t.ID, nil
		}
	}
	return "", nil
}

// Create makes a token.
func (s *Service) Create(ctx context.Context, in api.TokenRequest) (api.TokenCreated, error) {
	if _, ok := rolePerms[in.Role]; !ok {
		return api.TokenCreated{}, apperr.New(apperr.Invalid, "role %q is not one of %s", in.Role, strings.Join(Roles(), ", "))
	}
	if err := input.Required("token name (who or what uses it)", in.Name, input.MaxName); err != nil {
		return api.TokenCreated{}, err
	}
	if (in.Role == RoleSiteIT) != (len(in.Sites) > 0) {
		return api.TokenCreated{}, apperr.New(apperr.Invalid, "site-it tokens, and only they, list the sites they may act on")
	}
	if len(in.Sites) > MaxTokenSites {
		return api.TokenCreated{}, apperr.New(apperr.TooLarge, "a token lists at most %d sites", MaxTokenSites)
	}
	seen := map[string]bool{}
	for _, site := range in.Sites {
		if err := input.Identifier("site", site); err != nil {
			return api.TokenCreated{}, err
		}
		if seen[site] {
			return api.TokenCreated{}, apperr.New(apperr.Invalid, "site %q is listed twice", site)
		}
		seen[site] = true
	}
	if in.ExpiresIn == 0 {
		in.ExpiresIn = DefaultTokenLifetime
	}
	if in.ExpiresIn < 0 || in.ExpiresIn > MaxTokenLifetime {
		return api.TokenCreated{}, apperr.New(apperr.Invalid, "expiry must be between now and %s", MaxTokenLifetime)
	}
	idb, secb := make([]byte, 6), make([]byte, 24)
	rand.Read(idb)
	rand.Read(secb)
	id, secret := hex.EncodeToString(idb), hex.EncodeToString(secb)
	exp := s.now().Add(in.ExpiresIn).UTC().Truncate(time.Second)
	if err := s.st.CreateToken(ctx, state.Token{ID: id, SecretHash: hashSecret(secret), Name: in.Name, Role: in.Role, Sites: in.Sites, Expires: exp}); err != nil {
		return api.TokenCreated{}, err
	}
	if _, err := audit.Record(ctx, s.st, "token.create", id, map[string]any{"name": in.Name, "role": in.Role, "sites": in.Sites, "expires": exp}); err != nil {
		return api.TokenCreated{}, err
	}
	return api.TokenCreated{ID: id, Secret: tokenPrefix + id + "_" + secret, Role: in.Role, Sites: in.Sites, Expires: exp}, nil
}

// Revoke revokes a token.
func (s *Service) Revoke(ctx context.Context, id string) error {
	if err := s.st.RevokeToken(ctx, id); err != nil {
		return err
	}
	_, err := audit.Record(ctx, s.st, "token.revoke", id, nil)
	return err
}

// List lists tokens (never their secrets).
func (s *Service) List(ctx context.Context) ([]api.Token, error) {
	ts, err := s.st.Tokens(ctx)
	out := make([]api.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.Token{ID: t.ID, Name: t.Name, Role: t.Role, Sites: t.Sites, Expires: t.Expires, Revoked: t.Revoked, Created: t.Created})
	}
	return out, err
}

type principalKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// From returns the principal in ctx (zero if none).
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
