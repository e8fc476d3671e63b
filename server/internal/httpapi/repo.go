package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
)

// Repository is what the repository routes need (tufrepo.Repo).
type Repository interface {
	Open(ctx context.Context, area, path string, rng *blob.Range) (io.ReadCloser, blob.Info, error)
	Stat(ctx context.Context, area, path string) (blob.Info, error)
	Submit(ctx context.Context, req api.SubmitRequest) (map[string]int64, error)
	OnlineKeys() (api.OnlineKeys, error)
	Upload(ctx context.Context, product, file, sha256hex string, length int64, body io.Reader) (bool, error)
}

// RegisterRepository adds the public repository routes (GET/HEAD
// /repo/metadata/FILE and /repo/targets/PATH) and the management routes,
// which need the bootstrap token.
func RegisterRepository(r *gin.Engine, repo Repository, auth Authenticator) {
	serve := func(area string) gin.HandlerFunc {
		return func(c *gin.Context) { serveBlob(c, repo, area, c.Param("path")) }
	}
	for _, area := range []string{"metadata", "targets"} {
		r.GET(api.RepoPrefix+"/"+area+"/*path", serve(area))
		r.HEAD(api.RepoPrefix+"/"+area+"/*path", serve(area))
	}
	m := r.Group("/api/v1/repo")
	m.GET("/online-keys", authorize(auth, "GET", "/api/v1/repo/online-keys", operator.PermRepoWrite), func(c *gin.Context) {
		keys, err := repo.OnlineKeys()
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, keys)
	})
	m.POST("/metadata", authorize(auth, "POST", "/api/v1/repo/metadata", operator.PermRepoWrite), func(c *gin.Context) {
		var req api.SubmitRequest
		if c.Request.ContentLength > tufrepo.MaxSubmitBytes {
			WriteError(c, apperr.New(apperr.TooLarge, "the submission is %d bytes; the limit is %d", c.Request.ContentLength, int64(tufrepo.MaxSubmitBytes)))
			return
		}
		http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(bodyTimeout(c)))
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, tufrepo.MaxSubmitBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				WriteError(c, apperr.Wrap(err, apperr.TooLarge, "the submission is over the limit of %d bytes", int64(tufrepo.MaxSubmitBytes)))
				return
			}
			WriteError(c, apperr.Wrap(err, apperr.Invalid, "the body is not a metadata submission: %v", err))
			return
		}
		versions, err := repo.Submit(c.Request.Context(), req)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, api.SubmitResponse{Versions: versions})
	})
	m.PUT("/targets/:product/:file", authorize(auth, "PUT", "/api/v1/repo/targets/:product/:file", operator.PermRepoWrite), func(c *gin.Context) {
		length, err := strconv.ParseInt(c.Query("length"), 10, 64)
		if err != nil || length <= 0 {
			WriteError(c, apperr.New(apperr.Invalid, "query parameter length=%q is not a positive number of bytes", c.Query("length")))
			return
		}
		if cl := c.Request.ContentLength; cl >= 0 && cl != length {
			WriteError(c, apperr.New(apperr.Invalid, "Content-Length %d does not match length=%d", cl, length))
			return
		}
		stored, err := repo.Upload(c.Request.Context(), c.Param("product"), c.Param("file"), c.Query("sha256"), length, uploadBody(c))
		if err != nil {
			WriteError(c, err)
			return
		}
		status := http.StatusCreated
		if !stored {
			status = http.StatusOK
		}
		c.JSON(status, gin.H{"stored": stored})
	})
}

// Authenticator resolves bearer tokens (operator.Service).
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (operator.Principal, error)
}

// policy records each management route's permission, for the
// authorization matrix test: every route must declare one.
var policy = map[string]operator.Permission{}

// Policy returns "METHOD /path" → permission for every management route.
func Policy() map[string]operator.Permission { return policy }

// authorize admits a request whose bearer token holds perm, and records
// who acts (for the audit log and site scoping). Deny by default.
func authorize(auth Authenticator, method, path string, perm operator.Permission) gin.HandlerFunc {
	policy[method+" "+path] = perm
	return func(c *gin.Context) {
		// RFC 6750: "Bearer TOKEN"; a bare token is not accepted (finding 13).
		scheme, bearer, _ := strings.Cut(c.GetHeader("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			bearer = ""
		}
		p, err := auth.Authenticate(c.Request.Context(), strings.TrimSpace(bearer))
		if err != nil {
			WriteError(c, err)
			return
		}
		if !p.Can(perm) {
			WriteError(c, apperr.New(apperr.Forbidden, "role %s may not do this (needs %s)", p.Role, perm))
			return
		}
		ctx := operator.WithPrincipal(audit.WithActor(c.Request.Context(), p.Name), p)
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}

// serveBlob answers GET and HEAD for a repository file with Content-Length,
// ETag (If-None-Match → 304) and single byte ranges (206, or 416 with
// Content-Range: bytes */SIZE).
func serveBlob(c *gin.Context, repo Repository, area, path string) {
	ctx := c.Request.Context()
	rng, rangeErr := parseRange(c.GetHeader("Range"))
	if rangeErr != nil {
		rng = nil // a malformed Range header is ignored (RFC 9110 §14.2)
	}
	// A whole GET takes body and Info from one read, consistent even while
	// the file is being replaced (timestamp.json during a publish). HEAD and
	// ranged GETs need only Info first; a range then reads just its bytes.
	var rc io.ReadCloser
	var info blob.Info
	var err error
	if c.Request.Method == http.MethodGet && rng == nil {
		rc, info, err = repo.Open(ctx, area, path, nil)
	} else {
		info, err = repo.Stat(ctx, area, path)
	}
	if err != nil {
		WriteError(c, err)
		return
	}
	if rc != nil {
		defer rc.Close()
	}
	h := c.Writer.Header()
	h.Set("ETag", info.ETag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	if area == "metadata" {
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
	} else {
		// Targets are content-addressed: a name never changes meaning.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if inm := c.GetHeader("If-None-Match"); inm != "" && inm == info.ETag {
		c.Status(http.StatusNotModified)
		return
	}
	if rng == nil {
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		c.Status(http.StatusOK)
	} else {
		start, end, ok := rng.resolve(info.Size)
		if !ok {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
			writeError(c, http.StatusRequestedRangeNotSatisfiable, apperr.New(apperr.Invalid, "range %s is outside the object (%d bytes)", c.GetHeader("Range"), info.Size).WithCode("range_not_satisfiable"))
			return
		}
		if c.Request.Method == http.MethodGet {
			if rc, _, err = repo.Open(ctx, area, path, &blob.Range{Offset: start, Length: end - start + 1}); err != nil {
				WriteError(c, err)
				return
			}
			defer rc.Close()
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, info.Size))
		h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
		c.Status(http.StatusPartialContent)
	}
	if c.Request.Method == http.MethodHead {
		return
	}
	io.Copy(c.Writer, rc)
}

// byteRange is one parsed "bytes=" range; -1 marks an open end.
type byteRange struct {
	start, end int64 // start -1: suffix range of the last `end` bytes
}

var errBadRange = errors.New("malformed Range header")

func parseRange(h string) (*byteRange, error) {
	if h == "" {
		return nil, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return nil, errBadRange
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return nil, errBadRange
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return nil, errBadRange
		}
		return &byteRange{start: -1, end: n}, nil
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return nil, errBadRange
	}
	end := int64(-1)
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return nil, errBadRange
		}
	}
	return &byteRange{start: start, end: end}, nil
}

// resolve turns the range into inclusive offsets within size.
func (r *byteRange) resolve(size int64) (start, end int64, ok bool) {
	if r.start == -1 {
		if size == 0 {
			return 0, 0, false
		}
		n := min(r.end, size)
		return size - n, size - 1, true
	}
	if r.start >= size {
		return 0, 0, false
	}
	end = r.end
	if end == -1 || end >= size {
		end = size - 1
	}
	return r.start, end, true
}
