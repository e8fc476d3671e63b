// Package client is the Go client of vigil-server's API, used by the vigil
// CLI (and later by vigil-agent). Every failed request comes back as an
// *api.Error with the server's code, message and request id.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/auditchain"
)

// Timeouts, with their units. Uploads have no overall deadline (images may
// be many GiB); connection set-up and response headers do.
const (
	DialTimeout           = 10 * time.Second
	ResponseHeaderTimeout = 5 * time.Minute
	// MaxResponseBytes bounds a decoded JSON response.
	MaxResponseBytes = 16 << 20
)

// Client talks to one vigil-server.
type Client struct {
	Base  string // http(s)://host:port
	Token string // bearer token for management calls
	HTTP  *http.Client
}

// New returns a client for base with token.
func New(base, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: DialTimeout}).DialContext
	tr.ResponseHeaderTimeout = ResponseHeaderTimeout
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, length int64, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return 0, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	if c.Token != "" {
		req.Header.Set(api.HeaderAuthorization, "Bearer "+c.Token)
	}
	if body != nil {
		ct := "application/json"
		if method == http.MethodPut {
			ct = "application/octet-stream"
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		e := &api.Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return resp.StatusCode, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: bad response: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Submit sends signed offline metadata for publishing.
func (c *Client) Submit(ctx context.Context, req api.SubmitRequest) (*api.SubmitResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out api.SubmitResponse
	_, err = c.do(ctx, http.MethodPost, api.PathSubmit, bytes.NewReader(b), int64(len(b)), &out)
	return &out, err
}

// Upload streams an image of length bytes with the given sha256 to the
// repository. It reports whether the server stored it (false: already there).
func (c *Client) Upload(ctx context.Context, product, file, sha256hex string, length int64, r io.Reader) (bool, error) {
	q := url.Values{"sha256": {sha256hex}, "length": {strconv.FormatInt(length, 10)}}
	path := api.PathUploadTarget + "/" + url.PathEscape(product) + "/" + url.PathEscape(file) + "?" + q.Encode()
	var out struct {
		Stored bool `json:"stored"`
	}
	_, err := c.do(ctx, http.MethodPut, path, r, length, &out)
	return out.Stored, err
}

// AuditPage fetches audit entries with seq > after (and time ≥ since, when
// set), at most limit.
func (c *Client) AuditPage(ctx context.Context, after int64, since string, limit int) ([]auditchain.Entry, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	if since != "" {
		q.Set("since", since)
	}
	var out struct {
		Entries []auditchain.Entry `json:"entries"`
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, -1, &out)
	return out.Entries, err
}

// Do sends a management request with a JSON body (nil for none) and decodes
// the JSON answer into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	length := int64(-1)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, length = bytes.NewReader(b), int64(len(b))
	}
	_, err := c.do(ctx, method, path, body, length, out)
	return err
}

// DoRaw sends a raw body (e.g. CSV) with a POST.
func (c *Client) DoRaw(ctx context.Context, path string, body []byte, out any) error {
	_, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(body), int64(len(body)), out)
	return err
}
