package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// Body limits, in bytes, and how long reading a body may take.
const (
	MaxJSONBodyBytes = 1 << 20
	MaxImportBytes   = 64 << 20
	// DefaultBodyReadTimeout bounds reading a JSON or CSV body (finding
	// 8: a client trickling a body must not hold a connection for ever);
	// an image upload may take longer but may not stall that long between
	// reads. The server's body_read_timeout setting overrides it.
	DefaultBodyReadTimeout = 60 * time.Second
)

const (
	ginKeyDevice = "vigil.device"
	ginKeyBody   = "vigil.body"
	// ginKeyBodyTimeout carries Deps.BodyReadTimeout to the handlers.
	ginKeyBodyTimeout = "vigil.body_timeout"
)

// bodyTimeout is the configured body read timeout of this request.
func bodyTimeout(c *gin.Context) time.Duration {
	if d := c.GetDuration(ginKeyBodyTimeout); d > 0 {
		return d
	}
	return DefaultBodyReadTimeout
}

// readBody reads a request body of at most limit bytes within the body read
// timeout: over the limit is 413, a body that does not arrive in time is a
// 400 naming the timeout.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, apperr.New(apperr.TooLarge, "request body of %d bytes is over the limit of %d", c.Request.ContentLength, limit)
	}
	timeout := bodyTimeout(c)
	rc := http.NewResponseController(c.Writer)
	rc.SetReadDeadline(time.Now().Add(timeout))
	defer rc.SetReadDeadline(time.Time{})
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, apperr.Wrap(err, apperr.TooLarge, "request body over the limit of %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, apperr.Wrap(err, apperr.Invalid, "the request body did not arrive within %s", timeout).WithCode(api.CodeBodyTimeout)
	case err != nil:
		return nil, apperr.Wrap(err, apperr.Invalid, "reading the request body: %v", err)
	}
	return body, nil
}

// decodeBody decodes the JSON body (read already by device authentication,
// or read now) into v, refusing unknown fields; it writes the error and
// reports false when it cannot.
func decodeBody(c *gin.Context, v any) bool {
	b, _ := c.Get(ginKeyBody)
	body, _ := b.([]byte)
	if body == nil {
		var err error
		if body, err = readBody(c, MaxJSONBodyBytes); err != nil {
			WriteError(c, err)
			return false
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(c, apperr.Wrap(err, apperr.Invalid, "the body is not valid JSON for this request: %v", err))
		return false
	}
	if dec.More() {
		WriteError(c, apperr.New(apperr.Invalid, "the body is not valid JSON for this request: data after the JSON value"))
		return false
	}
	return true
}

// idleDeadlineReader pushes the connection's read deadline forward on every
// read, so a long upload may take its time but a stalled one ends.
type idleDeadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (d *idleDeadlineReader) Read(p []byte) (int, error) {
	d.rc.SetReadDeadline(time.Now().Add(d.idle))
	n, err := d.r.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = apperr.Wrap(err, apperr.Invalid, "the upload stalled: no data for %s", d.idle).WithCode(api.CodeBodyTimeout)
	}
	return n, err
}

// uploadBody is the request body with the idle deadline applied.
func uploadBody(c *gin.Context) io.Reader {
	return &idleDeadlineReader{r: c.Request.Body, rc: http.NewResponseController(c.Writer), idle: bodyTimeout(c)}
}

// respond writes v with status, or err.
func respond(c *gin.Context, status int, v any, err error) {
	if err != nil {
		WriteError(c, err)
		return
	}
	c.JSON(status, v)
}
