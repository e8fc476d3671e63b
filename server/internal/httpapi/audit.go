package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/operator"
)

// MaxAuditPage bounds one page of audit entries.
const MaxAuditPage = 1000

// AuditLog is what the audit route needs (the state store).
type AuditLog interface {
	AuditEntries(ctx context.Context, afterSeq int64, since time.Time, limit int) ([]audit.Entry, error)
}

// RegisterAudit adds GET /api/v1/audit?after=SEQ&since=RFC3339&limit=N.
func RegisterAudit(r *gin.Engine, log AuditLog, auth Authenticator) {
	r.GET("/api/v1/audit", authorize(auth, "GET", "/api/v1/audit", operator.PermAuditRead), func(c *gin.Context) {
		after, _ := strconv.ParseInt(c.DefaultQuery("after", "0"), 10, 64)
		limit, _ := strconv.Atoi(c.DefaultQuery("limit", strconv.Itoa(MaxAuditPage)))
		if limit <= 0 || limit > MaxAuditPage {
			limit = MaxAuditPage
		}
		var since time.Time
		if s := c.Query("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				if t, err = time.Parse(time.DateOnly, s); err != nil {
					WriteError(c, apperr.New(apperr.Invalid, "since=%q is not a date (2026-11-01) or RFC 3339 time", s))
					return
				}
			}
			since = t
		}
		entries, err := log.AuditEntries(c.Request.Context(), after, since, limit)
		if err != nil {
			WriteError(c, err)
			return
		}
		if entries == nil {
			entries = []audit.Entry{}
		}
		c.JSON(http.StatusOK, gin.H{"entries": entries})
	})
}
