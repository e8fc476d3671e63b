package httpapi

import (
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
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
)

// serveArea serves one area of the repository ("metadata" or "targets");
// served (nil: none) counts the target bytes.
func serveArea(repo Repository, area string, served ServedCounter) gin.HandlerFunc {
	return func(c *gin.Context) {
		n := serveBlob(c, repo, area, c.Param("path"))
		if served != nil && n > 0 {
			served.Add(c.Request.Context(), c.Param("path"), n)
		}
	}
}

func onlineKeys(repo Repository) gin.HandlerFunc {
	return func(c *gin.Context) {
		keys, err := repo.OnlineKeys()
		respond(c, http.StatusOK, keys, err)
	}
}

// submit verifies and publishes signed metadata; the body is limited while
// it is read (413) and must arrive within the body read timeout.
func submit(repo Repository) gin.HandlerFunc {
	return func(c *gin.Context) {
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
		respond(c, http.StatusOK, api.SubmitResponse{Versions: versions}, err)
	}
}

// upload streams an image in: 201 when stored, 200 when it was there.
func upload(repo Repository) gin.HandlerFunc {
	return func(c *gin.Context) {
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
		status := http.StatusCreated
		if !stored {
			status = http.StatusOK
		}
		respond(c, status, api.Uploaded{Stored: stored}, err)
	}
}

// serveBlob answers GET and HEAD for a repository file with Content-Length,
// ETag (If-None-Match → 304) and single byte ranges (206, or 416 with
// Content-Range: bytes */SIZE). It returns the bytes of the body it wrote.
func serveBlob(c *gin.Context, repo Repository, area, path string) int64 {
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
		return 0
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
		return 0
	}
	if rng == nil {
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		c.Status(http.StatusOK)
	} else {
		start, end, ok := rng.resolve(info.Size)
		if !ok {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
			WriteError(c, apperr.New(apperr.OutOfRange, "range %s is outside the object (%d bytes)", c.GetHeader("Range"), info.Size))
			return 0
		}
		if c.Request.Method == http.MethodGet {
			if rc, _, err = repo.Open(ctx, area, path, &blob.Range{Offset: start, Length: end - start + 1}); err != nil {
				WriteError(c, err)
				return 0
			}
			defer rc.Close()
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, info.Size))
		h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
		c.Status(http.StatusPartialContent)
	}
	if c.Request.Method == http.MethodHead {
		return 0
	}
	n, _ := io.Copy(c.Writer, rc)
	return n
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
