// Package notice is customer notices: the maker tells hospitals about a
// vulnerability (a finding) or an incident, and what to do. A notice gets
// one delivery per site: visible to that site's IT through the API, sent
// to the site's webhook (HMAC-signed as api/webhooksig describes) and,
// when an SMTP relay is configured, by e-mail. Each site acknowledges;
// unacknowledged notices past the acknowledgement window are listed.
// Sending a notice about an uncontrolled finding stops its 30-day clock.
//
// Delivery is durable: deliveries live in the database with their state,
// attempts, last error and next attempt; Deliver (run by one replica at a
// time under a lease) sends what is due and retries failures with
// exponential backoff (RetryBase, doubling, MaxAttempts per channel), so
// a restart or a receiver that is down for a while loses nothing.
//
// Threat model: notice text is the maker's, but site contacts come from
// operators: webhook URLs must be http(s), secrets at least
// webhook.MinSecretLength bytes and never shown again, e-mail addresses a
// single address without line breaks (no header injection).
package notice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/webhook"
)

// Limits and defaults, with their units.
const (
	// MaxText bounds a notice's text, in bytes.
	MaxText = 64 << 10
	// MaxTitle bounds its title, in bytes.
	MaxTitle = 200
	// MaxAttempts is how often one channel of a delivery is tried.
	MaxAttempts = 6
	// DefaultRetryBase is the first wait before a retry; each doubles it.
	DefaultRetryBase = 30 * time.Second
	// DefaultAckWindow: notices unacknowledged for longer are listed.
	DefaultAckWindow = 7 * 24 * time.Hour
	// AttemptTimeout bounds one webhook or SMTP attempt.
	AttemptTimeout = 15 * time.Second
	// deliverBatch bounds deliveries handled in one pass.
	deliverBatch = 100
)

// Channel states.
const (
	ChannelNone      = "none"
	ChannelPending   = "pending"
	ChannelDelivered = "delivered"
	ChannelFailed    = "failed"
	// statuses of a delivery record
	unacked = "unacked"
	acked   = "acked"
)

// Severities.
var severities = []string{"low", "moderate", "high", "critical"}

// Findings is what notices need of vigilance.
type Findings interface {
	Finding(ctx context.Context, id string) (api.FindingDetail, error)
	NoticeSent(ctx context.Context, id string, t time.Time) error
}

// Incidents links a notice to its incident.
type Incidents interface {
	Get(ctx context.Context, id string) (api.Incident, error)
	AddNotice(ctx context.Context, incident, notice string) error
}

// Sites lists the sites ("all").
type Sites interface {
	Sites(ctx context.Context) ([]state.Site, error)
}

// Store is what the service keeps.
type Store interface {
	state.NoticeStore
	audit.Recorder
}

// SMTP is the relay notices are mailed through.
type SMTP struct {
	Addr string // host:port
	From string
}

// Options configure the service.
type Options struct {
	Findings  Findings
	Incidents Incidents
	Sites     Sites
	SMTP      *SMTP
	RetryBase time.Duration
	AckWindow time.Duration
	Now       func() time.Time
	Log       *zap.Logger
	Client    *http.Client
}

// Service creates, delivers and acknowledges notices.
type Service struct {
	st Store
	o  Options
}

// New returns the service.
func New(st Store, o Options) *Service {
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.AckWindow <= 0 {
		o.AckWindow = DefaultAckWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: AttemptTimeout}
	}
	return &Service{st: st, o: o}
}

func (s *Service) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }

// delivery is a delivery as kept (state.Doc.Data).
type delivery struct {
	api.NoticeDelivery
	Notice    string    `json:"notice"`
	WebhookAt time.Time `json:"webhook_next,omitzero"`
	EmailAt   time.Time `json:"email_next,omitzero"`
}

// contacts are a site's notice contacts as kept.
type contacts struct {
	WebhookURL    string `json:"webhook_url,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	Email         string `json:"email,omitempty"`
}

// PutContacts stores where a site's notices go.
func (s *Service) PutContacts(ctx context.Context, site string, in api.SiteContacts) error {
	if err := input.Identifier("site", site); err != nil {
		return err
	}
	if p, ok := operator.From(ctx); ok && !p.CanSite(site) {
		return apperr.New(apperr.Forbidden, "this token may not change site %q", site)
	}
	c := contacts{WebhookURL: in.WebhookURL, WebhookSecret: in.WebhookSecret, Email: in.Email}
	if c.WebhookURL != "" {
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.WebhookURL) > 2048 {
			return apperr.New(apperr.Invalid, "webhook_url %q is not an http(s) URL", c.WebhookURL).WithField("webhook_url")
		}
		if len(c.WebhookSecret) < webhook.MinSecretLength {
			if old, err := s.contacts(ctx, site); err == nil && c.WebhookSecret == "" && old.WebhookSecret != "" {
				c.WebhookSecret = old.WebhookSecret // keep the secret when only the URL changes
			} else {
				return apperr.New(apperr.Invalid, "webhook_secret must be at least %d bytes (the receiver verifies the HMAC with it)", webhook.MinSecretLength).WithField("webhook_secret")
			}
		}
	} else if c.WebhookSecret != "" {
		return apperr.New(apperr.Invalid, "webhook_secret is set, but webhook_url is not").WithField("webhook_url")
	}
	if c.Email != "" {
		a, err := mail.ParseAddress(c.Email)
		if err != nil || a.Name != "" || strings.ContainsAny(c.Email, "\r\n<>,") || len(c.Email) > 320 {
			return apperr.New(apperr.Invalid, "email %q is not a single e-mail address", c.Email).WithField("email")
		}
	}
	data, _ := json.Marshal(c)
	now := s.now()
	if err := s.st.PutSiteContact(ctx, state.Doc{ID: site, Created: now, Updated: now, Data: data}); err != nil {
		return err
	}
	_, err := audit.Record(ctx, s.st, "site.contacts", site, map[string]any{"webhook_url": c.WebhookURL, "email": c.Email})
	return err
}

func (s *Service) contacts(ctx context.Context, site string) (contacts, error) {
	var c contacts
	d, err := s.st.SiteContact(ctx, site)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(d.Data, &c)
}

// Contacts returns a site's contacts without the secret.
func (s *Service) Contacts(ctx context.Context, site string) (api.SiteContacts, error) {
	if p, ok := operator.From(ctx); ok && !p.CanSite(site) {
		return api.SiteContacts{}, apperr.New(apperr.Forbidden, "this token may not read site %q", site)
	}
	c, err := s.contacts(ctx, site)
	if apperr.Is(err, apperr.NotFound) {
		return api.SiteContacts{}, nil
	}
	return api.SiteContacts{WebhookURL: c.WebhookURL, SecretSet: c.WebhookSecret != "", Email: c.Email}, err
}

func (s *Service) checkIn(ctx context.Context, in *api.NoticeIn) ([]string, error) {
	if (in.Finding == "") == (in.Incident == "") {
		return nil, apperr.New(apperr.Invalid, "a notice is about one finding or one incident: give exactly one of finding, incident")
	}
	if !slices.Contains(severities, in.Severity) {
		return nil, apperr.New(apperr.Invalid, "severity %q is not one of %s", in.Severity, strings.Join(severities, ", ")).WithField("severity")
	}
	if err := input.Required("title", in.Title, MaxTitle); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Text) == "" {
		return nil, apperr.New(apperr.Invalid, "text is required").WithField("text")
	}
	if err := input.Text("text", in.Text, MaxText); err != nil {
		return nil, err
	}
	if in.Finding != "" {
		if _, err := s.o.Findings.Finding(ctx, in.Finding); err != nil {
			return nil, err
		}
	}
	all, err := s.o.Sites.Sites(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	var names []string
	for _, st := range all {
		known[st.Name] = true
		names = append(names, st.Name)
	}
	if len(in.Sites) == 1 && in.Sites[0] == "all" {
		if len(names) == 0 {
			return nil, apperr.New(apperr.Invalid, "there are no sites to notify").WithField("sites")
		}
		return names, nil
	}
	if len(in.Sites) == 0 {
		return nil, apperr.New(apperr.Invalid, "sites is required: \"all\" or site names").WithField("sites")
	}
	for _, site := range in.Sites {
		if !known[site] {
			return nil, apperr.New(apperr.Invalid, "site %q does not exist", site).WithField("sites")
		}
	}
	slices.Sort(in.Sites)
	return slices.Compact(in.Sites), nil
}

// Create stores a notice and a delivery per site, links it to its
// incident, stops the notice clock of its finding, and queues the webhook
// and e-mail deliveries (Deliver sends them).
func (s *Service) Create(ctx context.Context, in api.NoticeIn) (api.Notice, error) {
	sites, err := s.checkIn(ctx, &in)
	if err != nil {
		return api.Notice{}, err
	}
	now := s.now()
	n := api.Notice{ID: "N-" + strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", "")[:10]), Finding: in.Finding, Incident: in.Incident, Severity: in.Severity, Title: in.Title,
		Text: in.Text, Created: now, CreatedBy: audit.ActorFrom(ctx)}
	var ds []state.Doc
	for _, site := range sites {
		d := delivery{Notice: n.ID, NoticeDelivery: api.NoticeDelivery{Site: site, Webhook: ChannelNone, Email: ChannelNone}}
		if c, err := s.contacts(ctx, site); err == nil {
			if c.WebhookURL != "" {
				d.Webhook, d.WebhookAt = ChannelPending, now
			}
			if c.Email != "" && s.o.SMTP != nil {
				d.Email, d.EmailAt = ChannelPending, now
			}
		} else if !apperr.Is(err, apperr.NotFound) {
			return api.Notice{}, err
		}
		doc, err := d.doc(now, n.Created)
		if err != nil {
			return api.Notice{}, err
		}
		ds = append(ds, doc)
		n.Deliveries = append(n.Deliveries, d.NoticeDelivery)
	}
	data, _ := json.Marshal(n)
	ref := in.Incident
	if ref == "" {
		ref = in.Finding
	}
	if in.Incident != "" && s.o.Incidents != nil {
		inc, err := s.o.Incidents.Get(ctx, in.Incident)
		if err != nil {
			return api.Notice{}, err // an unknown incident: nothing stored
		}
		if inc.Status != "open" {
			return api.Notice{}, apperr.New(apperr.Conflict, "incident %s is %s; open a new one for a new notice", in.Incident, inc.Status).WithCode(api.CodeBadTransition)
		}
	}
	if err := s.st.CreateNotice(ctx, state.Doc{ID: n.ID, Key: ref, Created: now, Updated: now, Data: data}, ds); err != nil {
		return api.Notice{}, err
	}
	if in.Incident != "" && s.o.Incidents != nil {
		// After the notice exists: an incident never names a notice that
		// is not there. (The timeline finds the notice by its audit entry
		// either way.)
		if err := s.o.Incidents.AddNotice(ctx, in.Incident, n.ID); err != nil {
			return api.Notice{}, err
		}
	}
	if _, err := audit.Record(ctx, s.st, "notice.create", n.ID, map[string]any{"finding": in.Finding, "incident": in.Incident,
		"severity": in.Severity, "title": in.Title, "sites": sites}); err != nil {
		return api.Notice{}, err
	}
	if in.Finding != "" {
		if err := s.o.Findings.NoticeSent(ctx, in.Finding, now); err != nil {
			return api.Notice{}, err
		}
	}
	return n, nil
}

func (d delivery) doc(now, created time.Time) (state.Doc, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return state.Doc{}, err
	}
	status := unacked
	if !d.Acked.IsZero() {
		status = acked
	}
	due := time.Time{}
	for _, t := range []time.Time{d.WebhookAt, d.EmailAt} {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	return state.Doc{ID: d.Notice + "/" + d.Site, Status: status, Key: d.Site, Created: created, Updated: now, Due: due, Data: data}, nil
}

func decodeDelivery(d state.Doc) (delivery, error) {
	var out delivery
	if err := json.Unmarshal(d.Data, &out); err != nil {
		return out, fmt.Errorf("stored delivery %s: %w", d.ID, err)
	}
	return out, nil
}

// scope is the sites the caller may see (nil: all).
func scope(ctx context.Context) []string {
	if p, ok := operator.From(ctx); ok && p.SiteScoped() {
		return append([]string{}, p.Sites...)
	}
	return nil
}

func (s *Service) assemble(ctx context.Context, nd state.Doc, sites []string) (api.Notice, error) {
	var n api.Notice
	if err := json.Unmarshal(nd.Data, &n); err != nil {
		return n, fmt.Errorf("stored notice %s: %w", nd.ID, err)
	}
	docs, err := s.st.Deliveries(ctx, state.DocFilter{IDPrefix: n.ID + "/"})
	if err != nil {
		return n, err
	}
	n.Deliveries = []api.NoticeDelivery{}
	for _, d := range docs {
		if sites != nil && !slices.Contains(sites, d.Key) {
			continue
		}
		dl, err := decodeDelivery(d)
		if err != nil {
			return n, err
		}
		n.Deliveries = append(n.Deliveries, dl.NoticeDelivery)
	}
	return n, nil
}

// Get returns a notice; a site-it token sees it only when addressed to one
// of its sites, with only those deliveries.
func (s *Service) Get(ctx context.Context, id string) (api.Notice, error) {
	nd, err := s.st.Notice(ctx, id)
	if err != nil {
		return api.Notice{}, err
	}
	sites := scope(ctx)
	n, err := s.assemble(ctx, nd, sites)
	if err != nil {
		return n, err
	}
	if sites != nil && len(n.Deliveries) == 0 {
		return api.Notice{}, apperr.New(apperr.NotFound, "no notice %q for your sites", id)
	}
	return n, nil
}

// List lists notices the caller may see; unacked keeps those with a site
// that has not acknowledged (overdue: for longer than the window).
func (s *Service) List(ctx context.Context, unackedOnly, overdue bool) (api.NoticeList, error) {
	sites := scope(ctx)
	f := state.DocFilter{Keys: sites}
	if sites != nil && len(sites) == 0 {
		return api.NoticeList{Notices: []api.Notice{}}, nil
	}
	if unackedOnly || overdue {
		f.Status = unacked
	}
	if overdue {
		f.Until = s.now().Add(-s.o.AckWindow)
	}
	ds, err := s.st.Deliveries(ctx, f)
	if err != nil {
		return api.NoticeList{}, err
	}
	var ids []string
	for _, d := range ds {
		if id, _, ok := strings.Cut(d.ID, "/"); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	out := api.NoticeList{Notices: []api.Notice{}}
	for _, id := range ids {
		nd, err := s.st.Notice(ctx, id)
		if err != nil {
			return out, err
		}
		n, err := s.assemble(ctx, nd, sites)
		if err != nil {
			return out, err
		}
		if unackedOnly || overdue {
			n.Deliveries = slices.DeleteFunc(n.Deliveries, func(d api.NoticeDelivery) bool { return !d.Acked.IsZero() })
		}
		out.Notices = append(out.Notices, n)
	}
	return out, nil
}

// Ack records a site's acknowledgement.
func (s *Service) Ack(ctx context.Context, id string, in api.NoticeAckIn) (api.Notice, error) {
	if err := input.Text("comment", in.Comment, input.MaxComment); err != nil {
		return api.Notice{}, err
	}
	sites := scope(ctx)
	site := in.Site
	if site == "" && len(sites) == 1 {
		site = sites[0]
	}
	if site == "" {
		return api.Notice{}, apperr.New(apperr.Invalid, "site is required: which site acknowledges").WithField("site")
	}
	if sites != nil && !slices.Contains(sites, site) {
		return api.Notice{}, apperr.New(apperr.Forbidden, "this token may not acknowledge for site %q", site)
	}
	ds, err := s.st.Deliveries(ctx, state.DocFilter{IDPrefix: id + "/", Key: site})
	if err != nil {
		return api.Notice{}, err
	}
	if len(ds) != 1 {
		return api.Notice{}, apperr.New(apperr.NotFound, "notice %q was not sent to site %q", id, site)
	}
	d, err := decodeDelivery(ds[0])
	if err != nil {
		return api.Notice{}, err
	}
	if d.Acked.IsZero() {
		now := s.now()
		d.Acked, d.AckedBy, d.AckComment = now, audit.ActorFrom(ctx), in.Comment
		doc, err := d.doc(now, ds[0].Created)
		if err != nil {
			return api.Notice{}, err
		}
		doc.Rev = ds[0].Rev
		if _, err := s.st.UpdateDelivery(ctx, doc); err != nil {
			return api.Notice{}, err
		}
		if _, err := audit.Record(ctx, s.st, "notice.ack", id, map[string]any{"site": site, "comment": in.Comment}); err != nil {
			return api.Notice{}, err
		}
	}
	return s.Get(ctx, id)
}

// NoticesIn lists every notice created in [since, until) with all its
// deliveries (evidence).
func (s *Service) NoticesIn(ctx context.Context, since, until time.Time) ([]api.Notice, error) {
	docs, err := s.st.Notices(ctx, state.DocFilter{Since: since, Until: until})
	if err != nil {
		return nil, err
	}
	out := []api.Notice{}
	for _, d := range docs {
		n, err := s.assemble(ctx, d, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Deliver sends every due delivery once (webhook, e-mail), records the
// outcome, and schedules retries. It returns how many attempts it made.
func (s *Service) Deliver(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.st.Deliveries(ctx, state.DocFilter{DueBefore: now, Limit: deliverBatch})
	if err != nil {
		return 0, err
	}
	attempts := 0
	for _, doc := range due {
		d, err := decodeDelivery(doc)
		if err != nil {
			return attempts, err
		}
		nd, err := s.st.Notice(ctx, d.Notice)
		if err != nil {
			return attempts, err
		}
		n, err := s.assemble(ctx, nd, []string{d.Site})
		if err != nil {
			return attempts, err
		}
		c, err := s.contacts(ctx, d.Site)
		if err != nil && !apperr.Is(err, apperr.NotFound) {
			return attempts, err
		}
		if d.Webhook == ChannelPending && !d.WebhookAt.After(now) {
			attempts++
			err := s.postWebhook(ctx, c, api.NoticeEvent{Event: "notice.created", Site: d.Site, Notice: n})
			d.WebhookTries++
			d.Webhook, d.WebhookAt, d.WebhookError = s.outcome(err, d.WebhookTries, now)
			s.logOutcome(ctx, "webhook", d, err)
		}
		if d.Email == ChannelPending && !d.EmailAt.After(now) {
			attempts++
			err := s.sendMail(ctx, c, n)
			d.EmailTries++
			d.Email, d.EmailAt, d.EmailError = s.outcome(err, d.EmailTries, now)
			s.logOutcome(ctx, "email", d, err)
		}
		nextDoc, err := d.doc(s.now(), doc.Created)
		if err != nil {
			return attempts, err
		}
		nextDoc.Rev = doc.Rev
		if _, err := s.st.UpdateDelivery(ctx, nextDoc); err != nil && !apperr.Is(err, apperr.Conflict) {
			return attempts, err // a Conflict: an ack landed meanwhile; the next pass retries
		}
	}
	return attempts, nil
}

// outcome is a channel's state after an attempt.
func (s *Service) outcome(err error, tries int, now time.Time) (string, time.Time, string) {
	if err == nil {
		return ChannelDelivered, time.Time{}, ""
	}
	if tries >= MaxAttempts {
		return ChannelFailed, time.Time{}, err.Error()
	}
	return ChannelPending, now.Add(s.o.RetryBase << (tries - 1)), err.Error()
}

func (s *Service) logOutcome(ctx context.Context, channel string, d delivery, err error) {
	state := d.Webhook
	if channel == "email" {
		state = d.Email
	}
	switch {
	case err == nil:
		s.o.Log.Info("notice delivered", zap.String("notice", d.Notice), zap.String("site", d.Site), zap.String("channel", channel))
		audit.Record(ctx, s.st, "notice.delivered", d.Notice, map[string]any{"site": d.Site, "channel": channel})
	case state == ChannelFailed:
		s.o.Log.Error("notice delivery gave up", zap.String("notice", d.Notice), zap.String("site", d.Site), zap.String("channel", channel), zap.Error(err))
		audit.Record(ctx, s.st, "notice.delivery_failed", d.Notice, map[string]any{"site": d.Site, "channel": channel, "error": err.Error()})
	default:
		s.o.Log.Warn("notice delivery failed; will retry", zap.String("notice", d.Notice), zap.String("site", d.Site), zap.String("channel", channel), zap.Error(err))
	}
}

func (s *Service) postWebhook(ctx context.Context, c contacts, ev api.NoticeEvent) error {
	if c.WebhookURL == "" {
		return fmt.Errorf("the site has no webhook any more")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	return webhook.Post(ctx, s.o.Client, c.WebhookURL, []byte(c.WebhookSecret), ev.Notice.ID+"/"+ev.Site, body, s.o.Now())
}

// Run delivers every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Deliver(ctx); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("delivering notices failed; will retry", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
