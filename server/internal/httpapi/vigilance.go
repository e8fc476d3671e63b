package httpapi

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
)

// Vigilance is what the vigilance routes need (vigilance.Service with the
// server's scheduled feeds).
type Vigilance interface {
	ImportUpload(ctx context.Context, kind string, body io.Reader) (api.ImportReport, error)
	Feeds(ctx context.Context) (api.FeedStatus, error)
	Findings(ctx context.Context, f vigilance.Filter) (api.FindingList, error)
	Finding(ctx context.Context, id string) (api.FindingDetail, error)
	Triage(ctx context.Context, id string, in api.Triage) (api.FindingDetail, error)
	Overdue(ctx context.Context) (api.FindingList, error)
	Exposure(ctx context.Context, vuln string) (api.Exposure, error)
	SBOM(ctx context.Context, product, version string) (api.SBOM, error)
	VEX(ctx context.Context, product, version, format string) ([]byte, string, error)
}

// MaxFeedUploadBytes bounds an uploaded feed (a zip of a whole ecosystem).
const MaxFeedUploadBytes = vigilance.MaxFeedDownloadBytes

func importFeed(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		if cl := c.Request.ContentLength; cl > MaxFeedUploadBytes {
			WriteError(c, apperr.New(apperr.TooLarge, "a feed of %d bytes is over the limit of %d", cl, int64(MaxFeedUploadBytes)))
			return
		}
		rep, err := s.ImportUpload(c.Request.Context(), c.Param("kind"), uploadBody(c))
		respond(c, http.StatusOK, rep, err)
	}
}

func feedStatus(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		st, err := s.Feeds(c.Request.Context())
		respond(c, http.StatusOK, st, err)
	}
}

func listFindings(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, _ := strconv.Atoi(c.Query("limit"))
		kev, _ := strconv.ParseBool(c.DefaultQuery("kev", "false"))
		l, err := s.Findings(c.Request.Context(), vigilance.Filter{Product: c.Query("product"), Release: c.Query("release"), Site: c.Query("site"),
			KEV: kev, Status: c.Query("status"), Limit: limit})
		respond(c, http.StatusOK, l, err)
	}
}

func showFinding(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, err := s.Finding(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, f, err)
	}
}

func triageFinding(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.Triage
		if !decodeBody(c, &in) {
			return
		}
		f, err := s.Triage(c.Request.Context(), c.Param("id"), in)
		respond(c, http.StatusOK, f, err)
	}
}

func overdueFindings(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		l, err := s.Overdue(c.Request.Context())
		respond(c, http.StatusOK, l, err)
	}
}

func exposure(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		e, err := s.Exposure(c.Request.Context(), c.Param("vuln"))
		respond(c, http.StatusOK, e, err)
	}
}

func releaseSBOM(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		sb, err := s.SBOM(c.Request.Context(), c.Param("product"), c.Param("version"))
		respond(c, http.StatusOK, sb, err)
	}
}

func exportVEX(s Vigilance) gin.HandlerFunc {
	return func(c *gin.Context) {
		b, media, err := s.VEX(c.Request.Context(), c.Param("product"), c.Param("version"), c.Query("format"))
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Data(http.StatusOK, media, b)
	}
}
