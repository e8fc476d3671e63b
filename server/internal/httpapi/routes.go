package httpapi

import (
	"context"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Access says who may call a route. Deny by default: every route declares
// one, and Operator routes name the permission they need.
type Access int

// Access levels.
const (
	// Public routes need nothing: probes, metrics, the TUF repository
	// (everything it serves is signed), and later the disclosure intake.
	Public Access = iota
	// Device routes need a request signed by a registered device's key.
	Device
	// Operator routes need a bearer token whose role holds Perm (and, for
	// site-scoped roles, the site the request is about).
	Operator
	// Session routes are the web console's: a signed-in session whose
	// token's role holds Perm (the same roles and site scoping as the API),
	// and on every request that changes state, the session's CSRF token.
	Session
)

func (a Access) String() string { return [...]string{"public", "device", "operator", "session"}[a] }

// Route is one entry of the route table: everything about a route is
// written here once, and the table drives registration, authorization,
// Policy and the authorization-matrix test.
type Route struct {
	Method string
	Path   string // an api.Route* pattern
	Access Access
	// Perm is the permission an Operator route needs.
	Perm operator.Permission
	// ChangesState marks a Device route whose requests spend their nonce
	// (replay protection).
	ChangesState bool
	Handle       gin.HandlerFunc
}

// The services the handlers call: small interfaces, one per domain part,
// implemented by tufrepo, fleet, operator and the state store.

// Repository is what the repository routes need (tufrepo.Repo).
type Repository interface {
	Open(ctx context.Context, area, path string, rng *blob.Range) (io.ReadCloser, blob.Info, error)
	Stat(ctx context.Context, area, path string) (blob.Info, error)
	Submit(ctx context.Context, req api.SubmitRequest) (map[string]int64, error)
	OnlineKeys() (api.OnlineKeys, error)
	Upload(ctx context.Context, product, file, sha256hex string, length int64, body io.Reader) (bool, error)
}

// ServedCounter is served.Counter.
type ServedCounter interface {
	Add(ctx context.Context, path string, n int64)
}

// Registry is fleet.Registry.
type Registry interface {
	DevicePage(ctx context.Context, q fleet.DeviceQuery) (api.DevicePage, error)
	PutSite(ctx context.Context, in api.Site) error
	RegisterDevices(ctx context.Context, ins []api.Device) error
	ImportDevices(ctx context.Context, ins []api.Device, lines []int) (api.DevicesRegistered, error)
	Decommission(ctx context.Context, id string) error
}

// DeviceAuth is fleet.DeviceAuth.
type DeviceAuth interface {
	PreAuthenticate(ctx context.Context, r fleet.DeviceRequest) error
	Authenticate(ctx context.Context, r fleet.DeviceRequest) (fleet.Authenticated, error)
	OpenSession(ctx context.Context, dev fleet.Authenticated, in api.SessionRequest) (api.Session, error)
}

// CheckIns is fleet.CheckIns.
type CheckIns interface {
	CheckIn(ctx context.Context, dev fleet.Authenticated, in api.CheckIn) (*api.Assignment, error)
}

// Events is fleet.Events.
type Events interface {
	Ingest(ctx context.Context, dev state.Device, b api.EventBatch) (api.EventBatchResponse, error)
	List(ctx context.Context, device string, limit int) ([]api.DeviceEvent, error)
}

// Rollouts is fleet.Rollouts.
type Rollouts interface {
	List(ctx context.Context) (api.RolloutList, error)
	Create(ctx context.Context, in api.RolloutPlan) (api.RolloutCreated, error)
	Status(ctx context.Context, id string) (api.RolloutStatus, error)
	Control(ctx context.Context, id, action string) (api.RolloutState, error)
	Approve(ctx context.Context, id string, in api.Approval) error
	Defer(ctx context.Context, id string, in api.Deferral) error
	HaltRelease(ctx context.Context, rel, reason string) ([]string, error)
}

// Authenticator resolves bearer tokens (operator.Service).
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (operator.Principal, error)
}

// Sessions resolves console sessions (operator.Service).
type Sessions interface {
	SessionFor(ctx context.Context, id string) (operator.Session, error)
}

// SessionRefusal renders a refused console request (the console's error
// page); status is 401, 403 or what the error's kind maps to.
type SessionRefusal func(c *gin.Context, status int, err error)

// TokenAdmin is what the token routes need (operator.Service).
type TokenAdmin interface {
	Create(ctx context.Context, in api.TokenRequest) (api.TokenCreated, error)
	Revoke(ctx context.Context, id string) error
	List(ctx context.Context) ([]api.Token, error)
}

// AuditLog is what the audit route needs (the state store).
type AuditLog interface {
	AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
}

// Services are the domain services behind the routes.
type Services struct {
	Repo Repository
	// Served counts target bytes served by release and kind (nil: none).
	Served     ServedCounter
	Registry   Registry
	DeviceAuth DeviceAuth
	CheckIns   CheckIns
	Events     Events
	Rollouts   Rollouts
	Operators  Authenticator
	Tokens     TokenAdmin
	Audit      AuditLog
	Vigilance  Vigilance
	// Sessions and Refuse serve the Session routes (nil: there are none).
	Sessions Sessions
	Refuse   SessionRefusal
	// Incident response.
	CVD         CVD
	SecurityTxt SecurityTxt
	Incidents   Incidents
	Notices     Notices
	Reports     Reports
}

// Routes is the route table of the API and the repository (probes and
// metrics are added by New).
func Routes(s Services) []Route {
	op := func(method, path string, perm operator.Permission, h gin.HandlerFunc) Route {
		return Route{Method: method, Path: path, Access: Operator, Perm: perm, Handle: h}
	}
	var table []Route
	table = []Route{
		{Method: http.MethodGet, Path: api.RouteOpenAPI, Access: Public, Handle: serveOpenAPI(&table)},
		{Method: http.MethodGet, Path: api.RouteRepoMetadata, Access: Public, Handle: serveArea(s.Repo, "metadata", nil)},
		{Method: http.MethodHead, Path: api.RouteRepoMetadata, Access: Public, Handle: serveArea(s.Repo, "metadata", nil)},
		{Method: http.MethodGet, Path: api.RouteRepoTargets, Access: Public, Handle: serveArea(s.Repo, "targets", s.Served)},
		{Method: http.MethodHead, Path: api.RouteRepoTargets, Access: Public, Handle: serveArea(s.Repo, "targets", s.Served)},
		op(http.MethodGet, api.RouteOnlineKeys, operator.PermRepoWrite, onlineKeys(s.Repo)),
		op(http.MethodPost, api.RouteSubmit, operator.PermRepoWrite, submit(s.Repo)),
		op(http.MethodPut, api.RouteUploadTarget, operator.PermRepoWrite, upload(s.Repo)),

		{Method: http.MethodPost, Path: api.RouteDeviceCheckIn, Access: Device, Handle: checkIn(s.CheckIns)},
		{Method: http.MethodPost, Path: api.RouteDeviceEvents, Access: Device, ChangesState: true, Handle: ingestEvents(s.Events)},
		{Method: http.MethodPost, Path: api.RouteDeviceSession, Access: Device, Handle: openSession(s.DeviceAuth)}, // a replayed opening yields a ticket whose key only the device can derive: no nonce spent

		op(http.MethodPut, api.RouteSite, operator.PermSiteWrite, putSite(s.Registry)),
		op(http.MethodPost, api.RouteDevices, operator.PermFleetWrite, registerDevices(s.Registry)),
		op(http.MethodGet, api.RouteDevices, operator.PermRead, listDevices(s.Registry)),
		op(http.MethodPost, api.RouteDeviceImport, operator.PermFleetWrite, importDevices(s.Registry)),
		op(http.MethodGet, api.RouteDeviceEventList, operator.PermRead, listDeviceEvents(s.Events)),
		op(http.MethodPost, api.RouteDecommission, operator.PermFleetWrite, decommission(s.Registry)),
		op(http.MethodPost, api.RouteRollouts, operator.PermRolloutWrite, createRollout(s.Rollouts)),
		op(http.MethodGet, api.RouteRollouts, operator.PermRead, listRollouts(s.Rollouts)),
		op(http.MethodGet, api.RouteRollout, operator.PermRead, rolloutStatus(s.Rollouts)),
		op(http.MethodPost, api.RouteRolloutPause, operator.PermRolloutWrite, controlRollout(s.Rollouts, fleet.ControlPause)),
		op(http.MethodPost, api.RouteRolloutResume, operator.PermRolloutWrite, controlRollout(s.Rollouts, fleet.ControlResume)),
		op(http.MethodPost, api.RouteRolloutAbort, operator.PermRolloutWrite, controlRollout(s.Rollouts, fleet.ControlAbort)),
		op(http.MethodPost, api.RouteApprovals, operator.PermRolloutReview, approve(s.Rollouts)),
		op(http.MethodPost, api.RouteDeferrals, operator.PermRolloutReview, deferWave(s.Rollouts)),
		op(http.MethodPost, api.RouteReleaseHalt, operator.PermRolloutWrite, haltRelease(s.Rollouts)),

		op(http.MethodPost, api.RouteTokens, operator.PermTokens, createToken(s.Tokens)),
		op(http.MethodGet, api.RouteTokens, operator.PermTokens, listTokens(s.Tokens)),
		op(http.MethodDelete, api.RouteToken, operator.PermTokens, revokeToken(s.Tokens)),
		op(http.MethodGet, api.RouteAudit, operator.PermAuditRead, auditPage(s.Audit)),

		op(http.MethodPost, api.RouteFeedImport, operator.PermVigilanceWrite, importFeed(s.Vigilance)),
		op(http.MethodGet, api.RouteFeeds, operator.PermRead, feedStatus(s.Vigilance)),
		op(http.MethodGet, api.RouteFindings, operator.PermRead, listFindings(s.Vigilance)),
		op(http.MethodGet, api.RouteFinding, operator.PermRead, showFinding(s.Vigilance)),
		op(http.MethodPost, api.RouteTriage, operator.PermTriage, triageFinding(s.Vigilance)),
		op(http.MethodGet, api.RouteOverdue, operator.PermRead, overdueFindings(s.Vigilance)),
		op(http.MethodGet, api.RouteExposure, operator.PermRead, exposure(s.Vigilance)),
		op(http.MethodGet, api.RouteReleaseSBOM, operator.PermRead, releaseSBOM(s.Vigilance)),
		op(http.MethodGet, api.RouteVEX, operator.PermRead, exportVEX(s.Vigilance)),

		{Method: http.MethodGet, Path: api.RouteSecurityTxt, Access: Public, Handle: securityTxt(s.SecurityTxt)},
		{Method: http.MethodPost, Path: api.RouteCVDReports, Access: Public, Handle: submitReport(s.CVD)},
		{Method: http.MethodGet, Path: api.RouteCVDReport, Access: Public, Handle: reporterView(s.CVD)},
		{Method: http.MethodPost, Path: api.RouteCVDReportNotes, Access: Public, Handle: reporterMessage(s.CVD)},
		op(http.MethodGet, api.RouteCVDCases, operator.PermCVDRead, listCases(s.CVD)),
		op(http.MethodGet, api.RouteCVDCase, operator.PermCVDRead, showCase(s.CVD)),
		op(http.MethodPost, api.RouteCVDTransition, operator.PermCVDManage, transitionCase(s.CVD)),
		op(http.MethodPost, api.RouteCVDLink, operator.PermCVDManage, linkCase(s.CVD)),
		op(http.MethodPost, api.RouteCVDCaseMessages, operator.PermCVDManage, replyCase(s.CVD)),

		op(http.MethodPost, api.RouteIncidents, operator.PermIncidentWrite, openIncident(s.Incidents)),
		op(http.MethodGet, api.RouteIncidents, operator.PermIncidentRead, listIncidents(s.Incidents)),
		op(http.MethodGet, api.RouteIncident, operator.PermIncidentRead, showIncident(s.Incidents)),
		op(http.MethodPost, api.RouteIncidentAction, operator.PermIncidentWrite, incidentAction(s.Incidents)),
		op(http.MethodGet, api.RouteIncidentTimeline, operator.PermIncidentRead, incidentTimeline(s.Incidents)),

		op(http.MethodPost, api.RouteNotices, operator.PermNoticeWrite, createNotice(s.Notices)),
		op(http.MethodGet, api.RouteNotices, operator.PermRead, listNotices(s.Notices)),
		op(http.MethodGet, api.RouteNotice, operator.PermRead, showNotice(s.Notices)),
		op(http.MethodPost, api.RouteNoticeAck, operator.PermNoticeAck, ackNotice(s.Notices)),
		op(http.MethodPut, api.RouteSiteContacts, operator.PermSiteWrite, putContacts(s.Notices)),
		op(http.MethodGet, api.RouteSiteContacts, operator.PermRead, showContacts(s.Notices)),

		op(http.MethodGet, api.RoutePatchingReport, operator.PermIncidentRead, patchingReport(s.Reports)),
		op(http.MethodGet, api.RouteEvidence, operator.PermEvidence, exportEvidence(s.Reports)),
	}
	return table
}

// Register adds routes to r, each behind the check its Access needs.
func Register(r *gin.Engine, routes []Route, s Services) {
	for _, rt := range routes {
		var chain []gin.HandlerFunc
		switch rt.Access {
		case Device:
			chain = append(chain, deviceAuth(s.DeviceAuth, rt.ChangesState))
		case Operator:
			chain = append(chain, authorize(s.Operators, rt.Perm))
		case Session:
			chain = append(chain, sessionAuth(s.Sessions, rt.Perm, s.Refuse))
		}
		r.Handle(rt.Method, rt.Path, append(chain, rt.Handle)...)
	}
}

// Policy returns "METHOD /path" → permission for every Operator and
// Session route, in order (docs, tests).
func Policy(routes []Route) map[string]operator.Permission {
	out := map[string]operator.Permission{}
	for _, rt := range routes {
		if rt.Access == Operator || rt.Access == Session {
			out[rt.Method+" "+rt.Path] = rt.Perm
		}
	}
	return out
}

// Sorted returns the routes ordered by path, then method.
func Sorted(routes []Route) []Route {
	out := append([]Route(nil), routes...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}
