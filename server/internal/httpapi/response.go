package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/cvd"
)

// CVD is what the disclosure routes need (cvd.Service).
type CVD interface {
	Allow(source string) error
	Submit(ctx context.Context, source string, in api.CVDReport) (api.CVDReceipt, error)
	ReporterView(ctx context.Context, id, secret string) (api.CVDReporterView, error)
	ReporterMessage(ctx context.Context, id, secret, text string) (api.CVDReporterView, error)
	List(ctx context.Context, status string, overdue bool) (api.CVDCaseList, error)
	Get(ctx context.Context, id string) (api.CVDCase, error)
	Transition(ctx context.Context, id string, in api.CVDTransitionIn) (api.CVDCase, error)
	Link(ctx context.Context, id string, in api.CVDLinkIn) (api.CVDCase, error)
	Reply(ctx context.Context, id, text string) (api.CVDCase, error)
}

// Incidents is incident.Service.
type Incidents interface {
	Open(ctx context.Context, in api.IncidentIn) (api.Incident, error)
	Get(ctx context.Context, id string) (api.Incident, error)
	List(ctx context.Context, status string) (api.IncidentList, error)
	Act(ctx context.Context, id string, a api.IncidentAction) (api.IncidentActionResult, error)
	Timeline(ctx context.Context, id string) (api.Timeline, error)
}

// Notices is notice.Service.
type Notices interface {
	Create(ctx context.Context, in api.NoticeIn) (api.Notice, error)
	Get(ctx context.Context, id string) (api.Notice, error)
	List(ctx context.Context, unacked, overdue bool) (api.NoticeList, error)
	Ack(ctx context.Context, id string, in api.NoticeAckIn) (api.Notice, error)
	PutContacts(ctx context.Context, site string, in api.SiteContacts) error
	Contacts(ctx context.Context, site string) (api.SiteContacts, error)
}

// Reports builds the patching report and evidence bundles.
type Reports interface {
	Patching(ctx context.Context, product string) (api.PatchingReport, error)
	Evidence(ctx context.Context, since, until time.Time) ([]byte, error)
}

// SecurityTxt serves security.txt ("" : not configured, 404).
type SecurityTxt func() string

func securityTxt(s SecurityTxt) gin.HandlerFunc {
	return func(c *gin.Context) {
		body := s()
		if body == "" {
			WriteError(c, apperr.New(apperr.NotFound, "this server publishes no security.txt (set security_contact and security_expires)"))
			return
		}
		c.Header("Cache-Control", "max-age=3600")
		c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(body))
	}
}

// publicLimited spends the caller's public-request budget first.
func publicLimited(s CVD, h gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.Allow(c.ClientIP()); err != nil {
			WriteError(c, err)
			return
		}
		h(c)
	}
}

func decodeLimited(c *gin.Context, limit int64, v any) bool {
	body, err := readBody(c, limit)
	if err != nil {
		WriteError(c, err)
		return false
	}
	c.Set(ginKeyBody, body)
	return decodeBody(c, v)
}

func submitReport(s CVD) gin.HandlerFunc {
	return publicLimited(s, func(c *gin.Context) {
		var in api.CVDReport
		if !decodeLimited(c, cvd.MaxReportBody, &in) {
			return
		}
		r, err := s.Submit(c.Request.Context(), c.ClientIP(), in)
		respond(c, http.StatusCreated, r, err)
	})
}

func reporterView(s CVD) gin.HandlerFunc {
	return publicLimited(s, func(c *gin.Context) {
		v, err := s.ReporterView(c.Request.Context(), c.Param("id"), c.GetHeader(api.HeaderReportSecret))
		respond(c, http.StatusOK, v, err)
	})
}

func reporterMessage(s CVD) gin.HandlerFunc {
	return publicLimited(s, func(c *gin.Context) {
		var in api.CVDMessageIn
		if !decodeLimited(c, cvd.MaxMessageBody, &in) {
			return
		}
		v, err := s.ReporterMessage(c.Request.Context(), c.Param("id"), c.GetHeader(api.HeaderReportSecret), in.Text)
		respond(c, http.StatusOK, v, err)
	})
}

func listCases(s CVD) gin.HandlerFunc {
	return func(c *gin.Context) {
		overdue, _ := strconv.ParseBool(c.DefaultQuery("overdue", "false"))
		l, err := s.List(c.Request.Context(), c.Query("status"), overdue)
		respond(c, http.StatusOK, l, err)
	}
}

func showCase(s CVD) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Get(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, v, err)
	}
}

func transitionCase(s CVD) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.CVDTransitionIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Transition(c.Request.Context(), c.Param("id"), in)
		respond(c, http.StatusOK, v, err)
	}
}

func linkCase(s CVD) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.CVDLinkIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Link(c.Request.Context(), c.Param("id"), in)
		respond(c, http.StatusOK, v, err)
	}
}

func replyCase(s CVD) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.CVDMessageIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Reply(c.Request.Context(), c.Param("id"), in.Text)
		respond(c, http.StatusOK, v, err)
	}
}

func openIncident(s Incidents) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.IncidentIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Open(c.Request.Context(), in)
		respond(c, http.StatusCreated, v, err)
	}
}

func listIncidents(s Incidents) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.List(c.Request.Context(), c.Query("status"))
		respond(c, http.StatusOK, v, err)
	}
}

func showIncident(s Incidents) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Get(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, v, err)
	}
}

func incidentAction(s Incidents) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.IncidentAction
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Act(c.Request.Context(), c.Param("id"), in)
		respond(c, http.StatusOK, v, err)
	}
}

func incidentTimeline(s Incidents) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Timeline(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, v, err)
	}
}

func createNotice(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.NoticeIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Create(c.Request.Context(), in)
		respond(c, http.StatusCreated, v, err)
	}
}

func listNotices(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		unacked, _ := strconv.ParseBool(c.DefaultQuery("unacked", "false"))
		overdue, _ := strconv.ParseBool(c.DefaultQuery("overdue", "false"))
		v, err := s.List(c.Request.Context(), unacked, overdue)
		respond(c, http.StatusOK, v, err)
	}
}

func showNotice(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Get(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, v, err)
	}
}

func ackNotice(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.NoticeAckIn
		if !decodeBody(c, &in) {
			return
		}
		v, err := s.Ack(c.Request.Context(), c.Param("id"), in)
		respond(c, http.StatusOK, v, err)
	}
}

func putContacts(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.SiteContacts
		if !decodeBody(c, &in) {
			return
		}
		err := s.PutContacts(c.Request.Context(), c.Param("name"), in)
		respond(c, http.StatusOK, api.SiteSaved{Site: c.Param("name")}, err)
	}
}

func showContacts(s Notices) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Contacts(c.Request.Context(), c.Param("name"))
		respond(c, http.StatusOK, v, err)
	}
}

func patchingReport(s Reports) gin.HandlerFunc {
	return func(c *gin.Context) {
		v, err := s.Patching(c.Request.Context(), c.Query("product"))
		respond(c, http.StatusOK, v, err)
	}
}

func parseTime(field, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, apperr.New(apperr.Invalid, "%s %q is not an RFC 3339 time (2026-01-31T00:00:00Z)", field, v).WithField(field)
	}
	return t, nil
}

func exportEvidence(s Reports) gin.HandlerFunc {
	return func(c *gin.Context) {
		since, err := parseTime("since", c.Query("since"))
		if err != nil {
			WriteError(c, err)
			return
		}
		until, err := parseTime("until", c.Query("until"))
		if err != nil {
			WriteError(c, err)
			return
		}
		b, err := s.Evidence(c.Request.Context(), since, until)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Header("Content-Disposition", `attachment; filename="vigil-evidence.zip"`)
		c.DataFromReader(http.StatusOK, int64(len(b)), "application/zip", bytes.NewReader(b), nil)
	}
}
