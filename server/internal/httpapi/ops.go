package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/auditchain"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// MaxAuditPage bounds one page of audit entries.
const MaxAuditPage = 1000

func createToken(s TokenAdmin) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.TokenRequest
		if !decodeBody(c, &in) {
			return
		}
		tok, err := s.Create(c.Request.Context(), in)
		respond(c, http.StatusCreated, tok, err)
	}
}

func listTokens(s TokenAdmin) gin.HandlerFunc {
	return func(c *gin.Context) {
		ts, err := s.List(c.Request.Context())
		if ts == nil {
			ts = []api.Token{}
		}
		respond(c, http.StatusOK, api.Tokens{Tokens: ts}, err)
	}
}

func revokeToken(s TokenAdmin) gin.HandlerFunc {
	return func(c *gin.Context) {
		respond(c, http.StatusOK, api.TokenRevoked{Revoked: c.Param("id")}, s.Revoke(c.Request.Context(), c.Param("id")))
	}
}

// auditPage answers GET /api/v1/audit?after=SEQ&since=RFC3339&limit=N.
func auditPage(s AuditLog) gin.HandlerFunc {
	return func(c *gin.Context) {
		after, _ := strconv.ParseInt(c.DefaultQuery("after", "0"), 10, 64)
		limit, _ := strconv.Atoi(c.DefaultQuery("limit", strconv.Itoa(MaxAuditPage)))
		if limit <= 0 || limit > MaxAuditPage {
			limit = MaxAuditPage
		}
		var since time.Time
		if v := c.Query("since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				if t, err = time.Parse(time.DateOnly, v); err != nil {
					WriteError(c, apperr.New(apperr.Invalid, "since=%q is not a date (2026-11-01) or RFC 3339 time", v))
					return
				}
			}
			since = t
		}
		entries, err := s.AuditEntries(c.Request.Context(), after, since, limit)
		if entries == nil {
			entries = []auditchain.Entry{}
		}
		respond(c, http.StatusOK, api.AuditPage{Entries: entries}, err)
	}
}
