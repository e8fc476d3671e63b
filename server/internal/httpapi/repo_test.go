package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/blob/localblob"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
)

// blobRepo serves a local blob store; management calls record what they got.
type blobRepo struct {
	blobs    blob.Store
	uploaded []byte
}

func (b *blobRepo) Open(ctx context.Context, area, path string, rng *blob.Range) (io.ReadCloser, blob.Info, error) {
	return b.blobs.Get(ctx, area+path, rng)
}
func (b *blobRepo) Stat(ctx context.Context, area, path string) (blob.Info, error) {
	return b.blobs.Stat(ctx, area+path)
}
func (b *blobRepo) Submit(context.Context, api.SubmitRequest) (map[string]int64, error) {
	return map[string]int64{"timestamp": 2}, nil
}
func (b *blobRepo) OnlineKeys() (api.OnlineKeys, error) { return api.OnlineKeys{SnapshotID: "s"}, nil }
func (b *blobRepo) Upload(_ context.Context, _, _, _ string, _ int64, r io.Reader) (bool, error) {
	var err error
	b.uploaded, err = io.ReadAll(r)
	return err == nil, err
}

// registerRepo registers the route table with only the repository behind it.
func registerRepo(r *gin.Engine, repo httpapi.Repository, token string) {
	svc := httpapi.Services{Repo: repo, Operators: operator.New(nil, token)}
	httpapi.Register(r, httpapi.Routes(svc), svc)
}

func repoServer(t *testing.T, token string) (*httptest.Server, *blobRepo) {
	bs, err := localblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bs.Put(context.Background(), "targets/demo-pump/abc.img", strings.NewReader("0123456789"), 10)
	r := httpapi.New(httpapi.Deps{Log: zap.NewNop(), Version: "t"})
	br := &blobRepo{blobs: bs}
	registerRepo(r, br, token)
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	return s, br
}

func req(t *testing.T, method, url string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	rq, _ := http.NewRequest(method, url, body)
	for k, v := range hdr {
		rq.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestRepositoryFilesServeRangesETagsAndHead(t *testing.T) {
	s, _ := repoServer(t, "tok")
	u := s.URL + "/repo/targets/demo-pump/abc.img"
	res, body := req(t, "GET", u, nil, nil)
	if res.StatusCode != 200 || body != "0123456789" || res.Header.Get("Content-Length") != "10" || res.Header.Get("ETag") == "" {
		t.Fatalf("GET: %d %q %v", res.StatusCode, body, res.Header)
	}
	etag := res.Header.Get("ETag")
	for rng, want := range map[string]string{"bytes=2-4": "234", "bytes=7-": "789", "bytes=-3": "789", "bytes=5-100": "56789"} {
		res, body = req(t, "GET", u, map[string]string{"Range": rng}, nil)
		if res.StatusCode != 206 || body != want || !strings.HasPrefix(res.Header.Get("Content-Range"), "bytes ") {
			t.Errorf("%s: %d %q %s", rng, res.StatusCode, body, res.Header.Get("Content-Range"))
		}
	}
	res, _ = req(t, "GET", u, map[string]string{"Range": "bytes=10-"}, nil)
	if res.StatusCode != 416 || res.Header.Get("Content-Range") != "bytes */10" {
		t.Fatalf("unsatisfiable range: %d %v", res.StatusCode, res.Header)
	}
	res, _ = req(t, "GET", u, map[string]string{"If-None-Match": etag}, nil)
	if res.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", res.StatusCode)
	}
	res, body = req(t, "HEAD", u, nil, nil)
	if res.StatusCode != 200 || body != "" || res.Header.Get("Content-Length") != "10" {
		t.Fatalf("HEAD: %d %q %v", res.StatusCode, body, res.Header)
	}
	for _, missing := range []string{"/repo/metadata/2.root.json", "/repo/targets/demo-pump/nope"} {
		if res, body := req(t, "GET", s.URL+missing, nil, nil); res.StatusCode != 404 || !strings.Contains(body, "request_id") {
			t.Errorf("%s: %d %s", missing, res.StatusCode, body)
		}
	}
}

func TestManagementNeedsTheBootstrapToken(t *testing.T) {
	s, br := repoServer(t, "tok")
	for hdr, want := range map[string]int{"": 401, "Bearer wrong": 401, "Bearer tok": 200} {
		res, _ := req(t, "GET", s.URL+api.RouteOnlineKeys, map[string]string{"Authorization": hdr}, nil)
		if res.StatusCode != want {
			t.Errorf("Authorization %q: %d, want %d", hdr, res.StatusCode, want)
		}
	}
	res, _ := req(t, "PUT", s.URL+api.Path(api.RouteUploadTarget, "demo-pump", "x.img")+"?sha256=ab&length=5", map[string]string{"Authorization": "Bearer tok"}, bytes.NewReader([]byte("hello")))
	if res.StatusCode != 201 || string(br.uploaded) != "hello" {
		t.Fatalf("upload: %d %q", res.StatusCode, br.uploaded)
	}
	res, body := req(t, "PUT", s.URL+api.Path(api.RouteUploadTarget, "demo-pump", "x.img")+"?sha256=ab&length=9", map[string]string{"Authorization": "Bearer tok"}, bytes.NewReader([]byte("hello")))
	if res.StatusCode != 400 || !strings.Contains(body, "Content-Length") {
		t.Fatalf("length mismatch: %d %s", res.StatusCode, body)
	}
	res, body = req(t, "POST", s.URL+api.RouteSubmit, map[string]string{"Authorization": "Bearer tok"}, strings.NewReader(`{"rooot":{}}`))
	if res.StatusCode != 400 || !strings.Contains(body, "rooot") {
		t.Fatalf("bad submission body: %d %s", res.StatusCode, body)
	}

	off, _ := repoServer(t, "")
	res, body = req(t, "GET", off.URL+api.RouteOnlineKeys, map[string]string{"Authorization": "Bearer anything"}, nil)
	if res.StatusCode != 401 || !strings.Contains(body, "unauthenticated") {
		t.Fatalf("no token configured: %d %s", res.StatusCode, body)
	}
}

// Finding 3: a submission over the limit is 413 while it is read, whether
// or not it announces its length; finding 11: a length that is not positive
// is a bad request, not "too large".
func TestSubmissionAndUploadLimitsAreEnforcedWhileReading(t *testing.T) {
	s, _ := repoServer(t, "tok")
	auth := map[string]string{"Authorization": "Bearer tok"}
	big := `{"root":"` + strings.Repeat("x", tufrepo.MaxSubmitBytes) + `"}`
	res, body := req(t, "POST", s.URL+api.RouteSubmit, auth, strings.NewReader(big))
	if res.StatusCode != 413 {
		t.Fatalf("announced oversized submission: %d %.200s", res.StatusCode, body)
	}
	res, body = req(t, "POST", s.URL+api.RouteSubmit, auth, io.MultiReader(strings.NewReader(big))) // chunked: no Content-Length
	if res.StatusCode != 413 {
		t.Fatalf("chunked oversized submission: %d %.200s", res.StatusCode, body)
	}
	for _, l := range []string{"0", "-1", "x"} {
		res, body = req(t, "PUT", s.URL+api.Path(api.RouteUploadTarget, "demo-pump", "x.img")+"?sha256=ab&length="+l, auth, strings.NewReader(""))
		if res.StatusCode != 400 {
			t.Errorf("upload length=%s: %d %s", l, res.StatusCode, body)
		}
	}
}

// Finding 8: a body that stops arriving ends the request with a clear
// error instead of holding the connection: a JSON submission within the
// body read timeout, an upload after that long without data.
func TestStalledBodiesEndAfterTheBodyReadTimeout(t *testing.T) {
	bs, _ := localblob.Open(t.TempDir())
	r := httpapi.New(httpapi.Deps{Log: zap.NewNop(), Version: "t", BodyReadTimeout: 300 * time.Millisecond})
	br := &blobRepo{blobs: bs}
	registerRepo(r, br, "tok")
	s := httptest.NewServer(r)
	defer s.Close()
	for name, head := range map[string]string{
		"submission": "POST " + api.RouteSubmit + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 100\r\n\r\n{\"root\":",
		"upload":     "PUT " + api.Path(api.RouteUploadTarget, "demo-pump", "x.img") + "?sha256=ab&length=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 100\r\n\r\n0123456789",
	} {
		conn, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn.Write([]byte(head)) // then nothing more
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%s: no answer within 20 s: %v", name, err)
		}
		if res.StatusCode != 400 || time.Since(start) > 10*time.Second {
			t.Errorf("%s: %d after %s", name, res.StatusCode, time.Since(start))
		}
	}
}

// Finding 9: X-Forwarded-For is believed only from configured proxies.
func TestClientAddressComesFromForwardedForOnlyThroughTrustedProxies(t *testing.T) {
	for _, c := range []struct {
		proxies []string
		want    string
	}{{nil, "192.0.2.1"}, {[]string{"10.0.0.0/8"}, "192.0.2.1"}, {[]string{"192.0.2.1"}, "203.0.113.9"}} {
		r := httpapi.New(httpapi.Deps{Log: zap.NewNop(), Version: "t", TrustedProxies: c.proxies})
		r.GET("/ip", func(g *gin.Context) { g.String(200, g.ClientIP()) })
		req := httptest.NewRequest("GET", "/ip", nil)
		req.RemoteAddr = "192.0.2.1:4444"
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Body.String() != c.want {
			t.Errorf("proxies %v: client %q, want %q", c.proxies, rec.Body.String(), c.want)
		}
	}
}
