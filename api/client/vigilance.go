package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/vigil-ota/vigil/api"
)

// ImportFeed streams a feed of length bytes (one JSON file or a zip
// archive) for import as kind (api.FeedOSV, FeedNVD, FeedKEV).
func (c *Client) ImportFeed(ctx context.Context, kind string, r io.Reader, length int64) (api.ImportReport, error) {
	var out api.ImportReport
	return out, c.do(ctx, http.MethodPost, api.Path(api.RouteFeedImport, kind), nil, r, length, "application/octet-stream", &out)
}

// Feeds reports what is imported and the scheduled feeds.
func (c *Client) Feeds(ctx context.Context) (api.FeedStatus, error) {
	var out api.FeedStatus
	return out, c.call(ctx, http.MethodGet, api.RouteFeeds, nil, &out)
}

// FindingQuery selects findings; empty fields select all.
type FindingQuery struct {
	Product, Release, Site, Status string
	KEV                            bool
	Limit                          int
}

// Findings lists findings.
func (c *Client) Findings(ctx context.Context, q FindingQuery) (api.FindingList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"product": q.Product, "release": q.Release, "site": q.Site, "status": q.Status} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.KEV {
		v.Set("kev", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := api.RouteFindings
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.FindingList
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Finding returns one finding.
func (c *Client) Finding(ctx context.Context, id string) (api.FindingDetail, error) {
	var out api.FindingDetail
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteFinding, id), nil, &out)
}

// Triage records a triage decision.
func (c *Client) Triage(ctx context.Context, id string, t api.Triage) (api.FindingDetail, error) {
	var out api.FindingDetail
	return out, c.call(ctx, http.MethodPost, api.Path(api.RouteTriage, id), t, &out)
}

// Overdue lists findings with an overdue clock.
func (c *Client) Overdue(ctx context.Context) (api.FindingList, error) {
	var out api.FindingList
	return out, c.call(ctx, http.MethodGet, api.RouteOverdue, nil, &out)
}

// Exposure reports where a vulnerability runs.
func (c *Client) Exposure(ctx context.Context, vuln string) (api.Exposure, error) {
	var out api.Exposure
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteExposure, vuln), nil, &out)
}

// SBOM returns a release's indexed SBOM.
func (c *Client) SBOM(ctx context.Context, product, version string) (api.SBOM, error) {
	var out api.SBOM
	return out, c.call(ctx, http.MethodGet, api.Path(api.RouteReleaseSBOM, product, version), nil, &out)
}

// VEX returns a release's VEX document in format (api.VEXFormat*).
func (c *Client) VEX(ctx context.Context, product, version, format string) ([]byte, error) {
	var out json.RawMessage
	err := c.call(ctx, http.MethodGet, api.Path(api.RouteVEX, product, version)+"?"+url.Values{"format": {format}}.Encode(), nil, &out)
	return out, err
}
