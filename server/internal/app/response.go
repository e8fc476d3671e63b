package app

import (
	"bytes"
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/server/internal/config"
	"github.com/vigil-ota/vigil/server/internal/cvd"
	"github.com/vigil-ota/vigil/server/internal/evidence"
	"github.com/vigil-ota/vigil/server/internal/incident"
	"github.com/vigil-ota/vigil/server/internal/notice"
)

// LeaseNotices gives notice delivery to one replica at a time.
const LeaseNotices = "notices"

// LeaseOrphans gives the sweep of orphaned uploads to one replica at a
// time; OrphanSweepInterval is how often it runs.
const (
	LeaseOrphans        = "orphan-uploads"
	OrphanSweepInterval = time.Hour
)

// openResponse builds incident response: disclosure, incidents, notices,
// reports and evidence. An expired security.txt refuses the start.
func (s *Server) openResponse(cfg config.Config, log *zap.Logger) error {
	sec, err := cfg.SecurityTxt(time.Now())
	if err != nil {
		return err
	}
	if sec == nil {
		log.Warn("no security_contact: /.well-known/security.txt is not served; researchers cannot find how to report a vulnerability")
	}
	s.security = sec
	stores := s.State
	s.CVD = cvd.New(stores, cvd.Options{AckWindow: cfg.CVDAckWindow, ReportsPerHour: int(cfg.CVDReportsPerHour),
		RequestsPerMinute: int(cfg.CVDRequestsPerMinute), Vulns: s.Vigilance, Log: log.Named("cvd")})
	s.Incidents = incident.New(stores, s.Fleet.Rollouts, s.Vigilance, s.CVD)
	var relay *notice.SMTP
	if cfg.SMTPRelay != "" {
		relay = &notice.SMTP{Addr: cfg.SMTPRelay, From: cfg.SMTPFrom}
	}
	s.Notices = notice.New(stores, notice.Options{Findings: s.Vigilance, Incidents: s.Incidents, Sites: stores, SMTP: relay,
		RetryBase: cfg.NoticeRetryBase, AckWindow: cfg.NoticeAckWindow, Log: log.Named("notice")})
	rep := evidence.NewReporter(stores)
	s.reports = reports{Reporter: rep, exp: evidence.NewExporter(evidence.Sources{Catalog: s.Repo, Vigilance: s.Vigilance, Cases: s.CVD,
		Incidents: s.Incidents, Notices: s.Notices, Rollouts: s.Fleet.Rollouts, Audit: stores, Reporter: rep})}
	return nil
}

func (s *Server) securityTxt() string {
	if s.security == nil {
		return ""
	}
	return s.security.Render()
}

// reports serves the patching report and evidence bundles.
type reports struct {
	*evidence.Reporter
	exp *evidence.Exporter
}

func (r reports) Evidence(ctx context.Context, since, until time.Time) ([]byte, error) {
	var b bytes.Buffer
	err := r.exp.Export(ctx, &b, since, until)
	return b.Bytes(), err
}
