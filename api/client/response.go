package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// The incident-response calls (api/response.go).

// SubmitReport files a disclosure report (public; no token needed).
func (c *Client) SubmitReport(ctx context.Context, r api.CVDReport) (api.CVDReceipt, error) {
	var out api.CVDReceipt
	return out, c.call(ctx, http.MethodPost, api.RouteCVDReports, r, &out)
}

// Cases lists disclosure cases.
func (c *Client) Cases(ctx context.Context, status string, overdue bool) (api.CVDCaseList, error) {
	var out api.CVDCaseList
	q := url.Values{"status": {status}, "overdue": {strconv.FormatBool(overdue)}}
	return out, c.call(ctx, http.MethodGet, api.RouteCVDCases+"?"+q.Encode(), nil, &out)
}

// Case shows one case.
func (c *Client) Case(ctx context.Context, id string) (api.CVDCase, error) {
	var out api.CVDCase
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteCVDCase, id), nil, &out)
}

// TransitionCase moves a case to another state.
func (c *Client) TransitionCase(ctx context.Context, id string, in api.CVDTransitionIn) (api.CVDCase, error) {
	var out api.CVDCase
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteCVDTransition, id), in, &out)
}

// LinkCase links a confirmed case to findings.
func (c *Client) LinkCase(ctx context.Context, id string, in api.CVDLinkIn) (api.CVDCase, error) {
	var out api.CVDCase
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteCVDLink, id), in, &out)
}

// ReplyCase adds the maker's message to a case.
func (c *Client) ReplyCase(ctx context.Context, id, text string) (api.CVDCase, error) {
	var out api.CVDCase
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteCVDCaseMessages, id), api.CVDMessageIn{Text: text}, &out)
}

// OpenIncident opens an incident.
func (c *Client) OpenIncident(ctx context.Context, in api.IncidentIn) (api.Incident, error) {
	var out api.Incident
	return out, c.call(ctx, http.MethodPost, api.RouteIncidents, in, &out)
}

// Incidents lists incidents.
func (c *Client) Incidents(ctx context.Context, status string) (api.IncidentList, error) {
	var out api.IncidentList
	return out, c.call(ctx, http.MethodGet, api.RouteIncidents+"?"+url.Values{"status": {status}}.Encode(), nil, &out)
}

// Incident shows one incident.
func (c *Client) Incident(ctx context.Context, id string) (api.Incident, error) {
	var out api.Incident
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteIncident, id), nil, &out)
}

// IncidentAct runs a response step through an incident.
func (c *Client) IncidentAct(ctx context.Context, id string, a api.IncidentAction) (api.IncidentActionResult, error) {
	var out api.IncidentActionResult
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteIncidentAction, id), a, &out)
}

// Timeline reads an incident's timeline.
func (c *Client) Timeline(ctx context.Context, id string) (api.Timeline, error) {
	var out api.Timeline
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteIncidentTimeline, id), nil, &out)
}

// CreateNotice sends a customer notice.
func (c *Client) CreateNotice(ctx context.Context, in api.NoticeIn) (api.Notice, error) {
	var out api.Notice
	return out, c.call(ctx, http.MethodPost, api.RouteNotices, in, &out)
}

// Notices lists the notices the token may see.
func (c *Client) Notices(ctx context.Context, unacked, overdue bool) (api.NoticeList, error) {
	var out api.NoticeList
	q := url.Values{"unacked": {strconv.FormatBool(unacked)}, "overdue": {strconv.FormatBool(overdue)}}
	return out, c.call(ctx, http.MethodGet, api.RouteNotices+"?"+q.Encode(), nil, &out)
}

// Notice shows one notice.
func (c *Client) Notice(ctx context.Context, id string) (api.Notice, error) {
	var out api.Notice
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteNotice, id), nil, &out)
}

// AckNotice acknowledges a notice for a site.
func (c *Client) AckNotice(ctx context.Context, id string, in api.NoticeAckIn) (api.Notice, error) {
	var out api.Notice
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteNoticeAck, id), in, &out)
}

// PutSiteContacts sets where a site's notices go.
func (c *Client) PutSiteContacts(ctx context.Context, site string, in api.SiteContacts) error {
	return c.call(ctx, http.MethodPut, api.Path(api.RouteSiteContacts, site), in, nil)
}

// PatchingReport reads the fleet patch metrics.
func (c *Client) PatchingReport(ctx context.Context, product string) (api.PatchingReport, error) {
	var out api.PatchingReport
	return out, c.call(ctx, http.MethodGet, api.RoutePatchingReport+"?"+url.Values{"product": {product}}.Encode(), nil, &out)
}

// Evidence downloads the evidence bundle of [since, until).
func (c *Client) Evidence(ctx context.Context, since, until time.Time) ([]byte, error) {
	var out []byte
	q := url.Values{"since": {since.UTC().Format(time.RFC3339)}, "until": {until.UTC().Format(time.RFC3339)}}
	return out, c.call(ctx, http.MethodGet, api.RouteEvidence+"?"+q.Encode(), nil, &out)
}
