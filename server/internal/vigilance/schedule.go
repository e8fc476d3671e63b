package vigilance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Scheduled feed defaults and limits, with their units.
const (
	// DefaultFeedInterval is how often a scheduled feed is fetched when its
	// entry names no interval.
	DefaultFeedInterval = 6 * time.Hour
	// MinFeedInterval bounds how often a feed may be fetched.
	MinFeedInterval = time.Second
	// MaxFeedDownloadBytes bounds one download (a whole-ecosystem OSV zip
	// or an NVD year archive).
	MaxFeedDownloadBytes = 2 << 30
	// FeedFetchTimeout bounds one fetch and import.
	FeedFetchTimeout = 30 * time.Minute
)

// FeedConfig is one scheduled feed: "KIND URL [INTERVAL]" in the server's
// feeds setting, e.g. "osv https://osv-vulnerabilities.storage.googleapis.com/Go/all.zip 6h".
type FeedConfig struct {
	Kind     string
	URL      string
	Interval time.Duration
}

// Name identifies the feed in state and reports: its kind and URL
// without query or credentials.
func (f FeedConfig) Name() string {
	u, err := url.Parse(f.URL)
	if err != nil {
		return f.Kind
	}
	return f.Kind + " " + u.Scheme + "://" + u.Host + u.Path
}

// ParseFeedConfig reads one entry of the feeds setting.
func ParseFeedConfig(s string) (FeedConfig, error) {
	parts := strings.Fields(s)
	if len(parts) < 2 || len(parts) > 3 {
		return FeedConfig{}, fmt.Errorf("feed %q is not \"KIND URL [INTERVAL]\"", s)
	}
	fc := FeedConfig{Kind: parts[0], URL: parts[1], Interval: DefaultFeedInterval}
	if fc.Kind != api.FeedOSV && fc.Kind != api.FeedNVD && fc.Kind != api.FeedKEV {
		return fc, fmt.Errorf("feed %q: kind %q is not osv, nvd or kev", s, fc.Kind)
	}
	u, err := url.Parse(fc.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fc, fmt.Errorf("feed %q: %q is not an http(s) URL", s, fc.URL)
	}
	if len(parts) == 3 {
		if fc.Interval, err = time.ParseDuration(parts[2]); err != nil || fc.Interval < MinFeedInterval {
			return fc, fmt.Errorf("feed %q: interval %q is not a duration of at least %s", s, parts[2], MinFeedInterval)
		}
	}
	return fc, nil
}

// Fetcher fetches scheduled feeds with conditional GETs.
type Fetcher struct {
	Service *Service
	Client  *http.Client
	// TempDir holds downloads until they are imported.
	TempDir string
}

// Fetch downloads a feed unless it is unchanged since the last successful
// fetch (ETag, Last-Modified), imports it, and records the outcome. A
// failed import keeps the old validators, so the next fetch tries again.
func (f *Fetcher) Fetch(ctx context.Context, fc FeedConfig) (rep api.ImportReport, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, FeedFetchTimeout)
	defer cancel()
	s := f.Service
	release, err := s.importSlot(ctx)
	if err != nil {
		return rep, false, err
	}
	defer release()
	prev, err := s.feedState(ctx, fc.Name())
	if err != nil {
		return rep, false, err
	}
	next := prev
	next.Name, next.Fetched = fc.Name(), s.now()
	defer func() {
		if err != nil {
			next.Message = "failed: " + err.Error()
		}
		if serr := s.st.Vulns.PutFeedState(context.WithoutCancel(ctx), next); serr != nil && err == nil {
			err = serr
		}
	}()
	path, etag, lastMod, notModified, err := f.download(ctx, fc, prev)
	if err != nil || notModified {
		if notModified {
			next.Message = "not modified"
		}
		return rep, notModified, err
	}
	defer os.Remove(path)
	if rep, err = s.importFeed(ctx, fc.Kind, path); err != nil {
		return rep, false, err
	}
	next.ETag, next.LastModified, next.Succeeded = etag, lastMod, s.now()
	next.Message = fmt.Sprintf("imported %d records: %d new, %d changed, %d unchanged, %d skipped", rep.Records, rep.New, rep.Changed, rep.Unchanged, len(rep.Skipped))
	return rep, false, nil
}

func (s *Service) feedState(ctx context.Context, name string) (state.FeedState, error) {
	all, err := s.st.Vulns.FeedStates(ctx)
	if err != nil {
		return state.FeedState{}, err
	}
	for _, st := range all {
		if st.Name == name {
			return st, nil
		}
	}
	return state.FeedState{Name: name}, nil
}

// download fetches the feed into a temporary file (bounded), or reports it
// not modified.
func (f *Fetcher) download(ctx context.Context, fc FeedConfig, prev state.FeedState) (path, etag, lastMod string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fc.URL, nil)
	if err != nil {
		return "", "", "", false, err
	}
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", "", false, apperr.Wrap(err, apperr.Unavailable, "fetch %s", fc.Name())
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return "", "", "", true, nil
	case resp.StatusCode != http.StatusOK:
		return "", "", "", false, apperr.New(apperr.Unavailable, "fetch %s: HTTP %d", fc.Name(), resp.StatusCode)
	}
	if resp.ContentLength > MaxFeedDownloadBytes {
		return "", "", "", false, apperr.New(apperr.TooLarge, "fetch %s: %d bytes, over the limit of %d", fc.Name(), resp.ContentLength, int64(MaxFeedDownloadBytes))
	}
	path, err = saveFeed(f.TempDir, resp.Body)
	return path, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), false, err
}

// saveFeed writes a feed body to a temporary file named for its format
// (.zip when it starts like one, .json otherwise), at most
// MaxFeedDownloadBytes.
func saveFeed(dir string, body io.Reader) (string, error) {
	head := make([]byte, 4)
	n, err := io.ReadFull(body, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		if err == io.EOF {
			return "", apperr.New(apperr.Invalid, "the feed is empty")
		}
		return "", err
	}
	ext := ".json"
	if n == 4 && string(head) == "PK\x03\x04" {
		ext = ".zip"
	}
	tmp, err := os.CreateTemp(dir, "feed-*"+ext)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(head[:n]); err != nil {
		return "", err
	}
	w, err := io.Copy(tmp, io.LimitReader(body, MaxFeedDownloadBytes-int64(n)+1))
	var ae *apperr.Error
	switch {
	case errors.As(err, &ae):
		return "", err // e.g. the upload stalled (the HTTP layer's body timeout)
	case err != nil:
		return "", apperr.Wrap(err, apperr.Unavailable, "reading the feed")
	}
	if w+int64(n) > MaxFeedDownloadBytes {
		return "", apperr.New(apperr.TooLarge, "the feed is over %d bytes", int64(MaxFeedDownloadBytes))
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	ok = true
	return tmp.Name(), nil
}

// ImportUpload imports a feed uploaded as one body (a JSON file or a zip
// archive; the CLI zips a directory), spooled to a temporary file first.
func (s *Service) ImportUpload(ctx context.Context, kind string, body io.Reader) (api.ImportReport, error) {
	if kind != api.FeedOSV && kind != api.FeedNVD && kind != api.FeedKEV {
		return api.ImportReport{}, apperr.New(apperr.Invalid, "unknown feed kind %q: osv, nvd or kev", kind)
	}
	release, err := s.importSlot(ctx)
	if err != nil {
		return api.ImportReport{}, err
	}
	defer release()
	path, err := saveFeed(s.o.TempDir, body)
	if err != nil {
		return api.ImportReport{}, err
	}
	defer os.Remove(path)
	return s.importFeed(ctx, kind, path)
}

// Feeds reports what is imported and the scheduled feeds.
func (s *Service) Feeds(ctx context.Context) (api.FeedStatus, error) {
	return s.FeedStatus(ctx, s.o.Feeds)
}
