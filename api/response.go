package api

import (
	"encoding/json"
	"time"
)

// Coordinated vulnerability disclosure, incidents, customer notices,
// reports and evidence (docs/cvd.md, docs/incident-response.md).
const (
	// Public: security.txt (RFC 9116) and the disclosure intake.
	RouteSecurityTxt     = "/.well-known/security.txt"
	RouteCVDReports      = APIPrefix + "/cvd/reports"               // POST CVDReport → CVDReceipt (public)
	RouteCVDReport       = APIPrefix + "/cvd/reports/:id"           // GET (HeaderReportSecret) → CVDReporterView (public)
	RouteCVDReportNotes  = APIPrefix + "/cvd/reports/:id/messages"  // POST (HeaderReportSecret) CVDMessageIn → CVDReporterView (public)
	RouteCVDCases        = APIPrefix + "/cvd/cases"                 // GET ?status=&overdue= → CVDCaseList
	RouteCVDCase         = APIPrefix + "/cvd/cases/:id"             // GET → CVDCase
	RouteCVDTransition   = APIPrefix + "/cvd/cases/:id/transitions" // POST CVDTransitionIn → CVDCase
	RouteCVDLink         = APIPrefix + "/cvd/cases/:id/link"        // POST CVDLinkIn → CVDCase
	RouteCVDCaseMessages = APIPrefix + "/cvd/cases/:id/messages"    // POST CVDMessageIn → CVDCase (the maker's reply)

	RouteIncidents        = APIPrefix + "/incidents"              // POST IncidentIn → Incident; GET ?status= → IncidentList
	RouteIncident         = APIPrefix + "/incidents/:id"          // GET → Incident
	RouteIncidentAction   = APIPrefix + "/incidents/:id/actions"  // POST IncidentAction → IncidentActionResult
	RouteIncidentTimeline = APIPrefix + "/incidents/:id/timeline" // GET → Timeline

	RouteNotices      = APIPrefix + "/notices"              // POST NoticeIn → Notice; GET ?unacked=&overdue= → NoticeList
	RouteNotice       = APIPrefix + "/notices/:id"          // GET → Notice
	RouteNoticeAck    = APIPrefix + "/notices/:id/ack"      // POST NoticeAckIn → Notice
	RouteSiteContacts = APIPrefix + "/sites/:name/contacts" // PUT SiteContacts → SiteSaved; GET → SiteContacts (secret withheld)

	RoutePatchingReport = APIPrefix + "/reports/patching" // GET ?product= → PatchingReport
	RouteEvidence       = APIPrefix + "/evidence"         // GET ?since=&until= → application/zip
)

// HeaderReportSecret carries a reporter's case secret.
const HeaderReportSecret = "X-Vigil-Report-Secret"

// Error codes of incident response.
const (
	CodeRateLimited = "rate_limited"
)

// CVDReport is what a researcher or hospital submits.
type CVDReport struct {
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Product     string          `json:"product"`
	Version     string          `json:"version,omitempty"`
	Contact     string          `json:"contact,omitempty"`
	Attachments []CVDAttachment `json:"attachments,omitempty"`
}

// CVDAttachment is an attached file (Data base64 on the way in; only its
// description on the way out).
type CVDAttachment struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Data      []byte `json:"data,omitempty"`
	Size      int    `json:"size,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// CVDReceipt answers a report: the secret is shown once.
type CVDReceipt struct {
	ID     string    `json:"id"`
	Secret string    `json:"secret"`
	Status string    `json:"status"`
	AckDue time.Time `json:"acknowledge_by"`
}

// CVDMessage is one message on a case.
type CVDMessage struct {
	At   time.Time `json:"at"`
	From string    `json:"from"` // "reporter" or "maker" (reporter view), the actor (maker view)
	Text string    `json:"text"`
}

// CVDMessageIn adds a message.
type CVDMessageIn struct {
	Text string `json:"text"`
}

// CVDTransition is one state change of a case.
type CVDTransition struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
	By   string    `json:"by,omitempty"`
	Note string    `json:"note,omitempty"`
}

// CVDReporterView is what the reporter sees of their case.
type CVDReporterView struct {
	ID       string          `json:"id"`
	Title    string          `json:"title"`
	Status   string          `json:"status"`
	Received time.Time       `json:"received"`
	History  []CVDTransition `json:"history"`
	Messages []CVDMessage    `json:"messages"`
	// Vulnerability is the id assigned once the case is confirmed.
	Vulnerability string `json:"vulnerability,omitempty"`
}

// CVDCase is a case as the maker sees it.
type CVDCase struct {
	ID            string          `json:"id"`
	Title         string          `json:"title"`
	Description   string          `json:"description"`
	Product       string          `json:"product"`
	Version       string          `json:"version,omitempty"`
	Contact       string          `json:"contact,omitempty"`
	Source        string          `json:"source"`
	Status        string          `json:"status"`
	Received      time.Time       `json:"received"`
	AckDue        time.Time       `json:"acknowledge_by"`
	Acknowledged  time.Time       `json:"acknowledged,omitzero"`
	Overdue       bool            `json:"overdue"`
	DuplicateOf   string          `json:"duplicate_of,omitempty"`
	Vulnerability string          `json:"vulnerability,omitempty"`
	Releases      []string        `json:"releases,omitempty"`
	Findings      []string        `json:"findings,omitempty"`
	Attachments   []CVDAttachment `json:"attachments"`
	History       []CVDTransition `json:"history"`
	Messages      []CVDMessage    `json:"messages"`
}

// CVDCaseList lists cases.
type CVDCaseList struct {
	Cases []CVDCase `json:"cases"`
}

// CVDTransitionIn moves a case to another state.
type CVDTransitionIn struct {
	To          string `json:"to"`
	Note        string `json:"note"`
	DuplicateOf string `json:"duplicate_of,omitempty"`
}

// CVDLinkIn links a confirmed case to findings: Vulnerability is its CVE
// (empty: the server assigns an internal id), Releases the affected
// releases (PRODUCT@VERSION) the triager chose.
type CVDLinkIn struct {
	Vulnerability string   `json:"vulnerability,omitempty"`
	Releases      []string `json:"releases"`
	Summary       string   `json:"summary"`
	KEV           bool     `json:"known_exploited,omitempty"`
}

// IncidentIn opens an incident.
type IncidentIn struct {
	Title    string   `json:"title"`
	Severity string   `json:"severity"` // low, moderate, high, critical
	Product  string   `json:"product,omitempty"`
	Findings []string `json:"findings,omitempty"`
	Cases    []string `json:"cases,omitempty"`
}

// Incident is an incident and what it is linked to.
type Incident struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	Severity string    `json:"severity"`
	Product  string    `json:"product,omitempty"`
	Status   string    `json:"status"`
	Opened   time.Time `json:"opened"`
	OpenedBy string    `json:"opened_by"`
	Closed   time.Time `json:"closed,omitzero"`
	Findings []string  `json:"findings"`
	Cases    []string  `json:"cases"`
	Releases []string  `json:"releases"`
	Notices  []string  `json:"notices"`
}

// IncidentList lists incidents.
type IncidentList struct {
	Incidents []Incident `json:"incidents"`
}

// Incident actions.
const (
	ActionHalt         = "halt"          // halt every rollout of Release
	ActionPauseProduct = "pause_product" // pause every active rollout of Product
	ActionLink         = "link"          // link Release (a fix, a recall) or Finding or Case
	ActionNote         = "note"          // a note on the timeline (assessment, decision)
	ActionClose        = "close"
)

// IncidentAction is one response step run through the incident.
type IncidentAction struct {
	Action  string `json:"action"`
	Release string `json:"release,omitempty"`
	Product string `json:"product,omitempty"`
	Finding string `json:"finding,omitempty"`
	Case    string `json:"case,omitempty"`
	Note    string `json:"note"`
}

// IncidentActionResult reports what an action changed.
type IncidentActionResult struct {
	Incident Incident `json:"incident"`
	Rollouts []string `json:"rollouts,omitempty"`
}

// TimelineEntry is one audited step, from the audit chain.
type TimelineEntry struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Phase   string          `json:"phase"` // detection, assessment, containment, notice, remediation, fix_deployed, other
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Subject string          `json:"subject"`
	Details json.RawMessage `json:"details,omitempty"`
	Hash    string          `json:"hash"`
}

// Timeline is an incident's timeline.
type Timeline struct {
	Incident Incident        `json:"incident"`
	Entries  []TimelineEntry `json:"entries"`
}

// NoticeIn creates a customer notice.
type NoticeIn struct {
	Finding  string   `json:"finding,omitempty"`
	Incident string   `json:"incident,omitempty"`
	Sites    []string `json:"sites"` // ["all"] or names
	Severity string   `json:"severity"`
	Title    string   `json:"title"`
	Text     string   `json:"text"`
}

// NoticeDelivery is a notice's state at one site.
type NoticeDelivery struct {
	Site         string    `json:"site"`
	Webhook      string    `json:"webhook"` // none, pending, delivered, failed
	WebhookTries int       `json:"webhook_attempts"`
	WebhookError string    `json:"webhook_error,omitempty"`
	Email        string    `json:"email"` // none, pending, sent, failed
	EmailTries   int       `json:"email_attempts"`
	EmailError   string    `json:"email_error,omitempty"`
	Acked        time.Time `json:"acknowledged,omitzero"`
	AckedBy      string    `json:"acknowledged_by,omitempty"`
	AckComment   string    `json:"ack_comment,omitempty"`
}

// Notice is a customer notice and its deliveries (a site-it token sees
// only its own sites' deliveries).
type Notice struct {
	ID         string           `json:"id"`
	Finding    string           `json:"finding,omitempty"`
	Incident   string           `json:"incident,omitempty"`
	Severity   string           `json:"severity"`
	Title      string           `json:"title"`
	Text       string           `json:"text"`
	Created    time.Time        `json:"created"`
	CreatedBy  string           `json:"created_by"`
	Deliveries []NoticeDelivery `json:"deliveries"`
}

// NoticeList lists notices.
type NoticeList struct {
	Notices []Notice `json:"notices"`
}

// NoticeAckIn acknowledges a notice for a site.
type NoticeAckIn struct {
	Site    string `json:"site"`
	Comment string `json:"comment,omitempty"`
}

// SiteContacts are where a site's notices go. WebhookSecret is write-only.
type SiteContacts struct {
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	SecretSet     bool   `json:"webhook_secret_set,omitempty"`
	Email         string `json:"email,omitempty"`
}

// NoticeEvent is the body of a notice webhook (signed as api/webhooksig).
type NoticeEvent struct {
	Event  string `json:"event"` // notice.created
	Site   string `json:"site"`
	Notice Notice `json:"notice"`
}

// PatchingReport is the fleet patch metrics.
type PatchingReport struct {
	Generated time.Time        `json:"generated"`
	Releases  []ReleaseMetrics `json:"releases"`
	Sites     []SiteMetrics    `json:"sites"`
}

// ReleaseMetrics are one release's.
type ReleaseMetrics struct {
	Release   string    `json:"release"`
	Published time.Time `json:"published,omitzero"`
	Revoked   time.Time `json:"revoked,omitzero"`
	Eligible  int       `json:"eligible"`
	Committed int       `json:"committed"`
	// MedianHours and P90Hours: publish to commit, over the devices that
	// committed it (nil: none did).
	MedianHours *float64 `json:"median_hours"`
	P90Hours    *float64 `json:"p90_hours"`
}

// SiteMetrics are one site's: devices, and how many run a release with
// no open uncontrolled or known-exploited finding.
type SiteMetrics struct {
	Site    string  `json:"site"`
	Devices int     `json:"devices"`
	Clean   int     `json:"clean"`
	Share   float64 `json:"share_clean"`
}
