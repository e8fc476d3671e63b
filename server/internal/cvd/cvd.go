// Package cvd is coordinated vulnerability disclosure (ISO/IEC 29147 and
// 30111, FD&C Act §524B(b)(1)): the public intake where researchers and
// hospitals report a vulnerability, the case each report becomes, its
// states from received to disclosed (each transition timestamped, by whom,
// audited), the acknowledgement clock, and the link from a confirmed case
// to findings, so exposure, triage and the 30/60-day clocks of vigilance
// apply to it.
//
// Threat model: the intake is public and unauthenticated. Everything in a
// report is untrusted text: bounded (named limits below), valid UTF-8
// without control characters, stored as given and escaped wherever it is
// shown (the console's templates, JSON). Attachments are stored, never
// opened or served to anyone but the maker. A flood is bounded twice: a
// token bucket per source address in each replica (requests) and a count of
// stored cases per source address per hour in the database (cases, across
// replicas); refusals write nothing. The reporter's secret (32 random
// bytes, shown once) lets its holder read their own case's status and add
// messages, nothing else; only its SHA-256 is stored, and a wrong secret
// looks exactly like a missing case.
package cvd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/input"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Limits, with their units.
const (
	// MaxReportBody bounds a report request, in bytes (attachments travel
	// base64-encoded inside it).
	MaxReportBody = 4 << 20
	// MaxTitle bounds a title, in bytes.
	MaxTitle = 200
	// MaxDescription bounds a description or a message, in bytes.
	MaxDescription = 64 << 10
	// MaxContact bounds the reporter's contact, in bytes.
	MaxContact = 320
	// MaxAttachments bounds the files of one report.
	MaxAttachments = 4
	// MaxAttachmentBytes bounds one file, in bytes.
	MaxAttachmentBytes = 1 << 20
	// MaxMessages bounds the messages of one case.
	MaxMessages = 200
	// MaxMessageBody bounds a message request, in bytes.
	MaxMessageBody = MaxDescription + 4<<10
	// DefaultAckWindow is how long the maker has to acknowledge a report.
	DefaultAckWindow = 3 * 24 * time.Hour
	// DefaultReportsPerHour bounds the cases one source address opens per
	// hour (all replicas).
	DefaultReportsPerHour = 10
	// DefaultRequestsPerMinute is each replica's token bucket per source
	// address for the public routes: this many per minute, and as many at
	// once.
	DefaultRequestsPerMinute = 30
	// maxTrackedSources bounds the per-address buckets kept in memory.
	maxTrackedSources = 10000
	secretBytes       = 32
)

// Case states.
const (
	Received     = "received"
	Acknowledged = "acknowledged"
	Triaged      = "triaged"
	Confirmed    = "confirmed"
	Rejected     = "rejected"
	Duplicate    = "duplicate"
	Fixed        = "fixed"
	Disclosed    = "disclosed"
)

// next lists the states each state may move to.
var next = map[string][]string{
	Received:     {Acknowledged, Rejected, Duplicate},
	Acknowledged: {Triaged, Rejected, Duplicate},
	Triaged:      {Confirmed, Rejected, Duplicate},
	Confirmed:    {Fixed},
	Fixed:        {Disclosed},
}

// States lists every state in order.
func States() []string {
	return []string{Received, Acknowledged, Triaged, Confirmed, Rejected, Duplicate, Fixed, Disclosed}
}

// Vulnerabilities opens findings for a confirmed case (vigilance.Service).
type Vulnerabilities interface {
	AddReported(ctx context.Context, vulnID, caseID, summary string, kev bool, releases []string) ([]string, error)
}

// Store is what the service keeps.
type Store interface {
	state.CaseStore
	audit.Recorder
}

// Options configure the service.
type Options struct {
	AckWindow         time.Duration
	ReportsPerHour    int
	RequestsPerMinute int
	Vulns             Vulnerabilities
	Now               func() time.Time
	Log               *zap.Logger
}

// Service runs the intake and the cases.
type Service struct {
	st Store
	o  Options

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// New returns the service.
func New(st Store, o Options) *Service {
	if o.AckWindow <= 0 {
		o.AckWindow = DefaultAckWindow
	}
	if o.ReportsPerHour <= 0 {
		o.ReportsPerHour = DefaultReportsPerHour
	}
	if o.RequestsPerMinute <= 0 {
		o.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Service{st: st, o: o, buckets: map[string]*rate.Limiter{}}
}

func (s *Service) now() time.Time { return s.o.Now().UTC().Truncate(time.Millisecond) }

// stored is a case as kept (state.Doc.Data).
type stored struct {
	api.CVDCase
	SecretHash string `json:"secret_hash"`
}

// Allow spends one of source's public requests; it refuses (RateLimited)
// when the address's bucket is empty.
func (s *Service) Allow(source string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[source]
	if !ok {
		if len(s.buckets) >= maxTrackedSources {
			clear(s.buckets) // crude but bounded: a flood of addresses resets everyone
		}
		b = rate.NewLimiter(rate.Limit(float64(s.o.RequestsPerMinute)/60), s.o.RequestsPerMinute)
		s.buckets[source] = b
	}
	if !b.AllowN(s.o.Now(), 1) {
		return apperr.New(apperr.RateLimited, "too many requests from %s; wait a minute and try again", source).WithCode(api.CodeRateLimited)
	}
	return nil
}

func checkReport(in *api.CVDReport) error {
	if err := input.Required("title", in.Title, MaxTitle); err != nil {
		return err
	}
	if strings.TrimSpace(in.Description) == "" {
		return apperr.New(apperr.Invalid, "description is required").WithField("description")
	}
	if err := input.Text("description", in.Description, MaxDescription); err != nil {
		return err
	}
	if err := release.ValidateProduct(in.Product); err != nil {
		return apperr.New(apperr.Invalid, "product: %v", err).WithField("product")
	}
	if err := input.Line("version", in.Version, input.MaxName); err != nil {
		return err
	}
	if err := input.Line("contact", in.Contact, MaxContact); err != nil {
		return err
	}
	if len(in.Attachments) > MaxAttachments {
		return apperr.New(apperr.TooLarge, "%d attachments; the limit is %d", len(in.Attachments), MaxAttachments).WithField("attachments")
	}
	for i, a := range in.Attachments {
		field := fmt.Sprintf("attachments[%d]", i)
		if err := input.Required(field+".name", a.Name, input.MaxName); err != nil {
			return err
		}
		if a.Name != path.Base(a.Name) || strings.ContainsAny(a.Name, `/\`) || a.Name == "." || a.Name == ".." {
			return apperr.New(apperr.Invalid, "%s.name %q is a path; give a plain file name", field, a.Name).WithField(field + ".name")
		}
		if len(a.Data) == 0 {
			return apperr.New(apperr.Invalid, "%s is empty", field).WithField(field)
		}
		if len(a.Data) > MaxAttachmentBytes {
			return apperr.New(apperr.TooLarge, "%s is %d bytes; the limit is %d", field, len(a.Data), MaxAttachmentBytes).WithField(field)
		}
		if a.MediaType == "" {
			a.MediaType = "application/octet-stream"
		}
		if _, _, err := mime.ParseMediaType(a.MediaType); err != nil || len(a.MediaType) > input.MaxName {
			return apperr.New(apperr.Invalid, "%s.media_type %q is not a media type", field, a.MediaType).WithField(field + ".media_type")
		}
	}
	return nil
}

func newID(prefix string) (string, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + strings.ToUpper(hex.EncodeToString(b)), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Submit opens a case from a public report.
func (s *Service) Submit(ctx context.Context, source string, in api.CVDReport) (api.CVDReceipt, error) {
	if err := checkReport(&in); err != nil {
		return api.CVDReceipt{}, err
	}
	now := s.now()
	recent, err := s.st.Cases(ctx, state.DocFilter{Key: source, Since: now.Add(-time.Hour), Limit: s.o.ReportsPerHour + 1})
	if err != nil {
		return api.CVDReceipt{}, err
	}
	if len(recent) >= s.o.ReportsPerHour {
		return api.CVDReceipt{}, apperr.New(apperr.RateLimited, "%s has sent %d reports in the last hour, the limit; try again later or write to the security contact",
			source, s.o.ReportsPerHour).WithCode(api.CodeRateLimited)
	}
	id, err := newID("CVD-")
	if err != nil {
		return api.CVDReceipt{}, err
	}
	sb := make([]byte, secretBytes)
	if _, err := rand.Read(sb); err != nil {
		return api.CVDReceipt{}, err
	}
	secret := base64.RawURLEncoding.EncodeToString(sb)
	c := stored{SecretHash: hashSecret(secret), CVDCase: api.CVDCase{ID: id, Title: in.Title, Description: in.Description, Product: in.Product,
		Version: in.Version, Contact: in.Contact, Source: source, Status: Received, Received: now, AckDue: now.Add(s.o.AckWindow),
		History: []api.CVDTransition{{To: Received, At: now, By: "reporter"}}, Messages: []api.CVDMessage{}, Attachments: []api.CVDAttachment{}}}
	var atts []state.Attachment
	for i, a := range in.Attachments {
		h := sha256.Sum256(a.Data)
		mt := a.MediaType
		if mt == "" {
			mt = "application/octet-stream"
		}
		atts = append(atts, state.Attachment{Index: i, Name: a.Name, MediaType: mt, SHA256: hex.EncodeToString(h[:]), Data: a.Data})
		c.Attachments = append(c.Attachments, api.CVDAttachment{Name: a.Name, MediaType: mt, Size: len(a.Data), SHA256: hex.EncodeToString(h[:])})
	}
	d, err := docOf(c, now)
	if err != nil {
		return api.CVDReceipt{}, err
	}
	if err := s.st.CreateCase(ctx, d, atts); err != nil {
		return api.CVDReceipt{}, err
	}
	if _, err := audit.Record(audit.WithActor(ctx, "reporter:"+source), s.st, "cvd.received", id, map[string]any{"product": in.Product,
		"version": in.Version, "attachments": len(atts), "acknowledge_by": c.AckDue}); err != nil {
		return api.CVDReceipt{}, err
	}
	s.o.Log.Info("disclosure report received", zap.String("case", id), zap.String("product", in.Product))
	return api.CVDReceipt{ID: id, Secret: secret, Status: Received, AckDue: c.AckDue}, nil
}

func docOf(c stored, now time.Time) (state.Doc, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return state.Doc{}, err
	}
	d := state.Doc{ID: c.ID, Status: c.Status, Key: c.Source, Created: c.Received, Updated: now, Data: data}
	if c.Status == Received {
		d.Due = c.AckDue
	}
	return d, nil
}

func (s *Service) load(ctx context.Context, id string) (stored, int64, error) {
	d, err := s.st.Case(ctx, id)
	if err != nil {
		return stored{}, 0, err
	}
	var c stored
	if err := json.Unmarshal(d.Data, &c); err != nil {
		return c, 0, fmt.Errorf("stored case %s: %w", id, err)
	}
	return c, d.Rev, nil
}

func (s *Service) save(ctx context.Context, c stored, rev int64) error {
	d, err := docOf(c, s.now())
	if err != nil {
		return err
	}
	d.Rev = rev
	_, err = s.st.UpdateCase(ctx, d)
	return err
}

// reporterCase loads a case for the holder of its secret; any mismatch is
// NotFound, so ids cannot be probed.
func (s *Service) reporterCase(ctx context.Context, id, secret string) (stored, int64, error) {
	notFound := apperr.New(apperr.NotFound, "no case %q for this secret", id)
	if !strings.HasPrefix(id, "CVD-") || len(id) > 32 || secret == "" {
		return stored{}, 0, notFound
	}
	c, rev, err := s.load(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return c, 0, notFound
	}
	if err != nil {
		return c, 0, err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(c.SecretHash)) != 1 {
		return stored{}, 0, notFound
	}
	return c, rev, nil
}

func reporterView(c stored) api.CVDReporterView {
	v := api.CVDReporterView{ID: c.ID, Title: c.Title, Status: c.Status, Received: c.Received, Vulnerability: c.Vulnerability,
		History: []api.CVDTransition{}, Messages: []api.CVDMessage{}}
	for _, t := range c.History {
		v.History = append(v.History, api.CVDTransition{From: t.From, To: t.To, At: t.At})
	}
	for _, m := range c.Messages {
		from := "maker"
		if m.From == "reporter" {
			from = "reporter"
		}
		v.Messages = append(v.Messages, api.CVDMessage{At: m.At, From: from, Text: m.Text})
	}
	return v
}

// ReporterView is what the secret's holder sees of the case.
func (s *Service) ReporterView(ctx context.Context, id, secret string) (api.CVDReporterView, error) {
	c, _, err := s.reporterCase(ctx, id, secret)
	if err != nil {
		return api.CVDReporterView{}, err
	}
	return reporterView(c), nil
}

func checkMessage(text string, count int) error {
	if strings.TrimSpace(text) == "" {
		return apperr.New(apperr.Invalid, "text is required").WithField("text")
	}
	if err := input.Text("text", text, MaxDescription); err != nil {
		return err
	}
	if count >= MaxMessages {
		return apperr.New(apperr.TooLarge, "the case holds %d messages, the limit; write to the security contact", MaxMessages)
	}
	return nil
}

// ReporterMessage adds the reporter's message to their case.
func (s *Service) ReporterMessage(ctx context.Context, id, secret, text string) (api.CVDReporterView, error) {
	c, rev, err := s.reporterCase(ctx, id, secret)
	if err != nil {
		return api.CVDReporterView{}, err
	}
	if err := checkMessage(text, len(c.Messages)); err != nil {
		return api.CVDReporterView{}, err
	}
	c.Messages = append(c.Messages, api.CVDMessage{At: s.now(), From: "reporter", Text: text})
	if err := s.save(ctx, c, rev); err != nil {
		return api.CVDReporterView{}, err
	}
	if _, err := audit.Record(audit.WithActor(ctx, "reporter:"+c.Source), s.st, "cvd.message", id, map[string]any{"from": "reporter", "bytes": len(text)}); err != nil {
		return api.CVDReporterView{}, err
	}
	return reporterView(c), nil
}

func (s *Service) view(c stored) api.CVDCase {
	out := c.CVDCase
	out.Overdue = c.Status == Received && s.now().After(c.AckDue)
	return out
}

// Get returns a case as the maker sees it.
func (s *Service) Get(ctx context.Context, id string) (api.CVDCase, error) {
	c, _, err := s.load(ctx, id)
	if err != nil {
		return api.CVDCase{}, err
	}
	return s.view(c), nil
}

// List lists cases, by status, or only those past their acknowledgement
// deadline.
func (s *Service) List(ctx context.Context, status string, overdue bool) (api.CVDCaseList, error) {
	if status != "" && !slices.Contains(States(), status) {
		return api.CVDCaseList{}, apperr.New(apperr.Invalid, "status %q is not one of %s", status, strings.Join(States(), ", ")).WithField("status")
	}
	f := state.DocFilter{Status: status}
	if overdue {
		f = state.DocFilter{Status: Received, DueBefore: s.now()}
	}
	docs, err := s.st.Cases(ctx, f)
	if err != nil {
		return api.CVDCaseList{}, err
	}
	out := api.CVDCaseList{Cases: []api.CVDCase{}}
	for _, d := range docs {
		var c stored
		if err := json.Unmarshal(d.Data, &c); err != nil {
			return out, fmt.Errorf("stored case %s: %w", d.ID, err)
		}
		out.Cases = append(out.Cases, s.view(c))
	}
	return out, nil
}

// Transition moves a case to another state, timestamped, by whom, audited.
func (s *Service) Transition(ctx context.Context, id string, in api.CVDTransitionIn) (api.CVDCase, error) {
	if err := input.Text("note", in.Note, input.MaxComment); err != nil {
		return api.CVDCase{}, err
	}
	c, rev, err := s.load(ctx, id)
	if err != nil {
		return api.CVDCase{}, err
	}
	if !slices.Contains(next[c.Status], in.To) {
		allowed := "none: the case is closed"
		if len(next[c.Status]) > 0 {
			allowed = strings.Join(next[c.Status], ", ")
		}
		return api.CVDCase{}, apperr.New(apperr.Conflict, "case %s is %s; it can move to %s, not %q", id, c.Status, allowed, in.To).WithCode(api.CodeBadTransition)
	}
	if in.To == Duplicate {
		if in.DuplicateOf == "" || in.DuplicateOf == id {
			return api.CVDCase{}, apperr.New(apperr.Invalid, "a duplicate names the case it duplicates (duplicate_of)").WithField("duplicate_of")
		}
		if _, _, err := s.load(ctx, in.DuplicateOf); err != nil {
			return api.CVDCase{}, err
		}
		c.DuplicateOf = in.DuplicateOf
	}
	if in.To == Disclosed && c.Vulnerability == "" {
		return api.CVDCase{}, apperr.New(apperr.Conflict, "case %s has no vulnerability id yet; link it (vigil cvd link) before disclosing", id).WithCode(api.CodeBadTransition)
	}
	now, by := s.now(), audit.ActorFrom(ctx)
	if in.To == Acknowledged {
		c.Acknowledged = now
	}
	c.History = append(c.History, api.CVDTransition{From: c.Status, To: in.To, At: now, By: by, Note: in.Note})
	from := c.Status
	c.Status = in.To
	if err := s.save(ctx, c, rev); err != nil {
		return api.CVDCase{}, err
	}
	if _, err := audit.Record(ctx, s.st, "cvd."+in.To, id, map[string]any{"from": from, "note": in.Note, "duplicate_of": in.DuplicateOf,
		"late": from == Received && now.After(c.AckDue)}); err != nil {
		return api.CVDCase{}, err
	}
	return s.view(c), nil
}

// Link gives a confirmed case its vulnerability id (a CVE, or an internal
// VIGIL-… id when there is none yet) and opens findings on the affected
// releases the triager chose.
func (s *Service) Link(ctx context.Context, id string, in api.CVDLinkIn) (api.CVDCase, error) {
	c, rev, err := s.load(ctx, id)
	if err != nil {
		return api.CVDCase{}, err
	}
	if c.Status != Confirmed && c.Status != Fixed {
		return api.CVDCase{}, apperr.New(apperr.Conflict, "case %s is %s; confirm it before linking findings", id, c.Status).WithCode(api.CodeBadTransition)
	}
	vuln := strings.TrimSpace(in.Vulnerability)
	if vuln == "" {
		vuln = c.Vulnerability
	}
	if vuln == "" {
		vuln = "VIGIL-" + strings.TrimPrefix(id, "CVD-")
	} else if err := input.Identifier("vulnerability", vuln); err != nil {
		return api.CVDCase{}, err
	}
	summary := in.Summary
	if summary == "" {
		summary = c.Title
	}
	if s.o.Vulns == nil {
		return api.CVDCase{}, apperr.New(apperr.Unavailable, "vigilance is not running on this server")
	}
	ids, err := s.o.Vulns.AddReported(ctx, vuln, id, summary, in.KEV, in.Releases)
	if err != nil {
		return api.CVDCase{}, err
	}
	c.Vulnerability = vuln
	c.Releases = dedupeSorted(append(c.Releases, in.Releases...))
	c.Findings = dedupeSorted(append(c.Findings, ids...))
	if err := s.save(ctx, c, rev); err != nil {
		return api.CVDCase{}, err
	}
	if _, err := audit.Record(ctx, s.st, "cvd.link", id, map[string]any{"vulnerability": vuln, "releases": in.Releases, "findings": ids}); err != nil {
		return api.CVDCase{}, err
	}
	return s.view(c), nil
}

func dedupeSorted(in []string) []string {
	slices.Sort(in)
	return slices.Compact(in)
}

// Reply adds the maker's message (the reporter sees it as "maker").
func (s *Service) Reply(ctx context.Context, id, text string) (api.CVDCase, error) {
	c, rev, err := s.load(ctx, id)
	if err != nil {
		return api.CVDCase{}, err
	}
	if err := checkMessage(text, len(c.Messages)); err != nil {
		return api.CVDCase{}, err
	}
	c.Messages = append(c.Messages, api.CVDMessage{At: s.now(), From: audit.ActorFrom(ctx), Text: text})
	if err := s.save(ctx, c, rev); err != nil {
		return api.CVDCase{}, err
	}
	if _, err := audit.Record(ctx, s.st, "cvd.message", id, map[string]any{"from": "maker", "bytes": len(text)}); err != nil {
		return api.CVDCase{}, err
	}
	return s.view(c), nil
}

// CasesIn lists the cases received in [since, until) (evidence).
func (s *Service) CasesIn(ctx context.Context, since, until time.Time) ([]api.CVDCase, error) {
	docs, err := s.st.Cases(ctx, state.DocFilter{Since: since, Until: until})
	if err != nil {
		return nil, err
	}
	out := []api.CVDCase{}
	for _, d := range docs {
		var c stored
		if err := json.Unmarshal(d.Data, &c); err != nil {
			return nil, err
		}
		out = append(out, s.view(c))
	}
	return out, nil
}
