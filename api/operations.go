package api

// Operation describes one route of the API for the OpenAPI document
// (GET RouteOpenAPI): what it does, its query parameters, and the Go
// types of its bodies, from which the document's schemas are made. The
// server's test checks this table against its router: every /api/v1 route
// is described, and every description is a route.
type Operation struct {
	Method  string
	Path    string // an api.Route* pattern
	Summary string
	Query   []string
	// Request is a zero value of the JSON body's type (nil: none, or
	// RequestMedia for a body that is not JSON).
	Request      any
	RequestMedia string
	// Response is a zero value of the JSON answer's type (nil: see
	// ResponseMedia).
	Response      any
	ResponseMedia string
}

// RouteOpenAPI serves the OpenAPI 3.1 document of the API (public).
const RouteOpenAPI = APIPrefix + "/openapi.json"

// Operations lists every /api/v1 route.
func Operations() []Operation {
	return []Operation{
		{Method: "GET", Path: RouteOpenAPI, Summary: "This OpenAPI document", ResponseMedia: "application/json"},
		{Method: "POST", Path: RouteSubmit, Summary: "Publish signed offline metadata (root, targets, product roles) as one repository version", Request: SubmitRequest{}, Response: SubmitResponse{}},
		{Method: "GET", Path: RouteOnlineKeys, Summary: "The server's online snapshot and timestamp keys (and the next ones during a rotation)", Response: OnlineKeys{}},
		{Method: "PUT", Path: RouteUploadTarget, Summary: "Upload a target image, hashed while it streams", Query: []string{"sha256", "length"}, RequestMedia: "application/octet-stream", Response: Uploaded{}},
		{Method: "POST", Path: RouteDeviceCheckIn, Summary: "A device checks in (signed by the device key); the answer holds at most one assignment", Request: CheckIn{}, Response: CheckInResponse{}},
		{Method: "POST", Path: RouteDeviceEvents, Summary: "A device reports install events (signed, replay-protected)", Request: EventBatch{}, Response: EventBatchResponse{}},
		{Method: "POST", Path: RouteDeviceSession, Summary: "A device opens a session (signed with its key; a replay yields a session only the device can use): later requests carry the ticket and a MAC instead of a signature", Request: SessionRequest{}, Response: Session{}},
		{Method: "PUT", Path: RouteSite, Summary: "Create or update a site", Request: Site{}, Response: SiteSaved{}},
		{Method: "POST", Path: RouteDevices, Summary: "Register devices", Request: []Device{}, Response: DevicesRegistered{}},
		{Method: "GET", Path: RouteDevices, Summary: "A page of devices", Query: []string{"site", "care_area", "product", "version", "q", "offset", "limit"}, Response: DevicePage{}},
		{Method: "POST", Path: RouteDeviceImport, Summary: "Register devices from CSV", RequestMedia: "text/csv", Response: DevicesRegistered{}},
		{Method: "GET", Path: RouteDeviceEventList, Summary: "A device's install events", Query: []string{"limit"}, Response: DeviceEvents{}},
		{Method: "POST", Path: RouteDecommission, Summary: "Decommission a device", Response: Decommissioned{}},
		{Method: "POST", Path: RouteRollouts, Summary: "Plan a rollout", Request: RolloutPlan{}, Response: RolloutCreated{}},
		{Method: "GET", Path: RouteRollouts, Summary: "Every rollout with its status", Response: RolloutList{}},
		{Method: "GET", Path: RouteRollout, Summary: "A rollout's status, with the sites the open wave waits for", Response: RolloutStatus{}},
		{Method: "POST", Path: RouteRolloutPause, Summary: "Pause a rollout", Response: RolloutState{}},
		{Method: "POST", Path: RouteRolloutResume, Summary: "Resume a rollout", Response: RolloutState{}},
		{Method: "POST", Path: RouteRolloutAbort, Summary: "Abort a rollout", Response: RolloutState{}},
		{Method: "POST", Path: RouteApprovals, Summary: "Approve (or revoke the approval of) a wave for a site", Request: Approval{}, Response: Done{}},
		{Method: "POST", Path: RouteDeferrals, Summary: "Defer a wave at a site", Request: Deferral{}, Response: Done{}},
		{Method: "POST", Path: RouteReleaseHalt, Summary: "Emergency halt of every rollout of a release", Request: HaltRequest{}, Response: Halted{}},
		{Method: "POST", Path: RouteTokens, Summary: "Create an operator token (the secret is shown once)", Request: TokenRequest{}, Response: TokenCreated{}},
		{Method: "GET", Path: RouteTokens, Summary: "List operator tokens", Response: Tokens{}},
		{Method: "DELETE", Path: RouteToken, Summary: "Revoke an operator token", Response: TokenRevoked{}},
		{Method: "GET", Path: RouteAudit, Summary: "A page of the hash-chained audit log", Query: []string{"after", "since", "limit"}, Response: AuditPage{}},
		{Method: "POST", Path: RouteFeedImport, Summary: "Import a vulnerability feed file (JSON or zip)", RequestMedia: "application/octet-stream", Response: ImportReport{}},
		{Method: "GET", Path: RouteFeeds, Summary: "What the feeds hold and when they were fetched", Response: FeedStatus{}},
		{Method: "GET", Path: RouteFindings, Summary: "Findings", Query: []string{"product", "release", "site", "kev", "status", "limit"}, Response: FindingList{}},
		{Method: "GET", Path: RouteFinding, Summary: "A finding with its devices, clocks and fixing release", Response: FindingDetail{}},
		{Method: "POST", Path: RouteTriage, Summary: "Triage a finding", Request: Triage{}, Response: FindingDetail{}},
		{Method: "GET", Path: RouteOverdue, Summary: "Findings with an overdue clock", Response: FindingList{}},
		{Method: "GET", Path: RouteExposure, Summary: "Devices per site exposed to a vulnerability, and the fixing release", Response: Exposure{}},
		{Method: "GET", Path: RouteReleaseSBOM, Summary: "A release's indexed SBOM", Response: SBOM{}},
		{Method: "GET", Path: RouteVEX, Summary: "A release's VEX document", Query: []string{"format"}, ResponseMedia: "application/json"},
		{Method: "POST", Path: RouteCVDReports, Summary: "Report a vulnerability (public; the answer's secret follows the case)", Request: CVDReport{}, Response: CVDReceipt{}},
		{Method: "GET", Path: RouteCVDReport, Summary: "A reporter reads their case (X-Vigil-Report-Secret)", Response: CVDReporterView{}},
		{Method: "POST", Path: RouteCVDReportNotes, Summary: "A reporter adds a message (X-Vigil-Report-Secret)", Request: CVDMessageIn{}, Response: CVDReporterView{}},
		{Method: "GET", Path: RouteCVDCases, Summary: "Disclosure cases", Query: []string{"status", "overdue"}, Response: CVDCaseList{}},
		{Method: "GET", Path: RouteCVDCase, Summary: "A disclosure case", Response: CVDCase{}},
		{Method: "POST", Path: RouteCVDTransition, Summary: "Move a case to another state", Request: CVDTransitionIn{}, Response: CVDCase{}},
		{Method: "POST", Path: RouteCVDLink, Summary: "Open findings for a confirmed case on the affected releases", Request: CVDLinkIn{}, Response: CVDCase{}},
		{Method: "POST", Path: RouteCVDCaseMessages, Summary: "The maker's message to the reporter", Request: CVDMessageIn{}, Response: CVDCase{}},
		{Method: "POST", Path: RouteIncidents, Summary: "Open an incident", Request: IncidentIn{}, Response: Incident{}},
		{Method: "GET", Path: RouteIncidents, Summary: "Incidents", Query: []string{"status"}, Response: IncidentList{}},
		{Method: "GET", Path: RouteIncident, Summary: "An incident", Response: Incident{}},
		{Method: "POST", Path: RouteIncidentAction, Summary: "Run a response step through an incident", Request: IncidentAction{}, Response: IncidentActionResult{}},
		{Method: "GET", Path: RouteIncidentTimeline, Summary: "An incident's timeline, from the audit chain", Response: Timeline{}},
		{Method: "POST", Path: RouteNotices, Summary: "Send a customer notice", Request: NoticeIn{}, Response: Notice{}},
		{Method: "GET", Path: RouteNotices, Summary: "Notices (a site's IT: its own sites)", Query: []string{"unacked", "overdue"}, Response: NoticeList{}},
		{Method: "GET", Path: RouteNotice, Summary: "A notice with its deliveries", Response: Notice{}},
		{Method: "POST", Path: RouteNoticeAck, Summary: "Acknowledge a notice for a site", Request: NoticeAckIn{}, Response: Notice{}},
		{Method: "PUT", Path: RouteSiteContacts, Summary: "Set where a site's notices go", Request: SiteContacts{}, Response: SiteSaved{}},
		{Method: "GET", Path: RouteSiteContacts, Summary: "A site's notice contacts (the secret withheld)", Response: SiteContacts{}},
		{Method: "GET", Path: RoutePatchingReport, Summary: "Fleet patch metrics", Query: []string{"product"}, Response: PatchingReport{}},
		{Method: "GET", Path: RouteEvidence, Summary: "The evidence bundle of a period", Query: []string{"since", "until"}, ResponseMedia: "application/zip"},
	}
}
