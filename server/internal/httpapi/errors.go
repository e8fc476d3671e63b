package httpapi

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// ErrorBody is what clients receive for every failed request.
type ErrorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// statusOf is the one place an error kind becomes an HTTP status.
func statusOf(k apperr.Kind) int {
	switch k {
	case apperr.Invalid:
		return http.StatusBadRequest
	case apperr.NotFound:
		return http.StatusNotFound
	case apperr.Conflict:
		return http.StatusConflict
	case apperr.Unauthorized:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.Unavailable:
		return http.StatusServiceUnavailable
	case apperr.TooLarge:
		return http.StatusRequestEntityTooLarge
	case apperr.VerificationFailed:
		return http.StatusUnprocessableEntity
	case apperr.OutOfRange:
		return http.StatusRequestedRangeNotSatisfiable
	case apperr.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case apperr.RateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// StatusOf reports the HTTP status for err.
func StatusOf(err error) int { return statusOf(apperr.KindOf(err)) }

// WriteError sends err as {code, message, request_id} with its status and
// logs the detail. Handlers call it and return.
func WriteError(c *gin.Context, err error) { writeError(c, StatusOf(err), err) }

func writeError(c *gin.Context, status int, err error) {
	code, msg := apperr.Public(err)
	rid := RequestID(c)
	fields := []zap.Field{zap.Int("status", status), zap.String("code", code), zap.Error(err)}
	if log := loggerOf(c); log != nil {
		switch {
		case status == http.StatusInternalServerError:
			log.Error("request failed", fields...) // a bug: with its stack
		case status >= 500:
			log.Warn("request failed", fields...) // a dependency or the configuration: no stack
		default:
			log.Info("request refused", fields...) // the caller's mistake
		}
	}
	if status == http.StatusTooManyRequests {
		c.Header("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	c.AbortWithStatusJSON(status, ErrorBody{Code: code, Message: msg, RequestID: rid})
}

// RetryAfterSeconds is the wait a 429 asks for.
const RetryAfterSeconds = 60

// LogError logs a failure the caller answers itself (the console's error
// pages), as WriteError would.
func LogError(c *gin.Context, status int, err error) {
	if log := loggerOf(c); log != nil {
		code, _ := apperr.Public(err)
		log.Error("request failed", zap.Int("status", status), zap.String("code", code), zap.Error(err))
	}
}
