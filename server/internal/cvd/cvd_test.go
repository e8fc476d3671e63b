package cvd_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/audit"
	"github.com/vigil-ota/vigil/server/internal/cvd"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newService(t *testing.T, o cvd.Options) (*cvd.Service, *clock) {
	st, err := sqlstore.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	o.Now = c.now
	return cvd.New(st, o), c
}

func report() api.CVDReport {
	return api.CVDReport{Title: "t", Description: "d", Product: "demo-pump"}
}

func TestSecurityTxtIsRefusedWhenExpiredOrMalformed(t *testing.T) {
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	good := cvd.SecurityTxt{Contacts: []string{"mailto:psirt@example.com"}, Expires: now.Add(24 * time.Hour), Policy: "https://example.com/p"}
	if err := good.Validate(now); err != nil {
		t.Fatal(err)
	}
	if txt := good.Render(); !strings.Contains(txt, "Contact: mailto:psirt@example.com\n") || !strings.Contains(txt, "Expires: 2026-12-01T00:00:00Z\n") {
		t.Fatal(txt)
	}
	for name, mutate := range map[string]func(*cvd.SecurityTxt){
		"expired":             func(s *cvd.SecurityTxt) { s.Expires = now.Add(-time.Second) },
		"more than a year":    func(s *cvd.SecurityTxt) { s.Expires = now.Add(400 * 24 * time.Hour) },
		"no contact":          func(s *cvd.SecurityTxt) { s.Contacts = nil },
		"javascript contact":  func(s *cvd.SecurityTxt) { s.Contacts = []string{"javascript:alert(1)"} },
		"http policy":         func(s *cvd.SecurityTxt) { s.Policy = "http://example.com/p" },
		"header in languages": func(s *cvd.SecurityTxt) { s.Languages = "en\nContact: mailto:evil@example.com" },
	} {
		s := good
		mutate(&s)
		if err := s.Validate(now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCaseStatesMoveOnlyForward(t *testing.T) {
	s, _ := newService(t, cvd.Options{})
	ctx := audit.WithActor(context.Background(), "token:t1:psirt")
	rc, err := s.Submit(ctx, "192.0.2.1", report())
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		to string
		ok bool
	}{{"triaged", false}, {"acknowledged", true}, {"acknowledged", false}, {"confirmed", false}, {"triaged", true}, {"duplicate", false},
		{"confirmed", true}, {"disclosed", false}, {"fixed", true}, {"disclosed", false}} {
		_, err := s.Transition(ctx, rc.ID, api.CVDTransitionIn{To: step.to})
		if (err == nil) != step.ok {
			t.Fatalf("to %s: %v, want ok=%v", step.to, err, step.ok)
		}
	}
	c, _ := s.Get(ctx, rc.ID)
	if c.Status != "fixed" || len(c.History) != 5 || c.History[1].By != "token:t1:psirt" {
		t.Fatalf("%+v", c)
	}
	// A duplicate names an existing, other case.
	rc2, _ := s.Submit(ctx, "192.0.2.1", report())
	if _, err := s.Transition(ctx, rc2.ID, api.CVDTransitionIn{To: "duplicate"}); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("duplicate without duplicate_of: %v", err)
	}
	if _, err := s.Transition(ctx, rc2.ID, api.CVDTransitionIn{To: "duplicate", DuplicateOf: "CVD-NOPE"}); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("duplicate of a missing case: %v", err)
	}
	if _, err := s.Transition(ctx, rc2.ID, api.CVDTransitionIn{To: "duplicate", DuplicateOf: rc.ID}); err != nil {
		t.Fatal(err)
	}
}

func TestAcknowledgementClockMakesCasesOverdue(t *testing.T) {
	s, c := newService(t, cvd.Options{AckWindow: 48 * time.Hour})
	ctx := context.Background()
	a, _ := s.Submit(ctx, "192.0.2.1", report())
	b, _ := s.Submit(ctx, "192.0.2.1", report())
	s.Transition(ctx, b.ID, api.CVDTransitionIn{To: "acknowledged"})
	c.t = c.t.Add(49 * time.Hour)
	l, err := s.List(ctx, "", true)
	if err != nil || len(l.Cases) != 1 || l.Cases[0].ID != a.ID || !l.Cases[0].Overdue {
		t.Fatalf("overdue %+v %v", l, err)
	}
}

func TestHostileReportsAreRefusedNamingTheField(t *testing.T) {
	s, _ := newService(t, cvd.Options{})
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		mutate func(*api.CVDReport)
		kind   apperr.Kind
		field  string
	}{
		{"blank title", func(r *api.CVDReport) { r.Title = "  " }, apperr.Invalid, "title"},
		{"long title", func(r *api.CVDReport) { r.Title = strings.Repeat("x", cvd.MaxTitle+1) }, apperr.TooLarge, "title"},
		{"escape sequence", func(r *api.CVDReport) { r.Title = "\x1b]8;;http://evil\x07" }, apperr.Invalid, "title"},
		{"invalid UTF-8", func(r *api.CVDReport) { r.Description = "\xff\xfe" }, apperr.Invalid, "description"},
		{"huge description", func(r *api.CVDReport) { r.Description = strings.Repeat("x", cvd.MaxDescription+1) }, apperr.TooLarge, "description"},
		{"product path", func(r *api.CVDReport) { r.Product = "../etc" }, apperr.Invalid, "product"},
		{"too many files", func(r *api.CVDReport) {
			for range cvd.MaxAttachments + 1 {
				r.Attachments = append(r.Attachments, api.CVDAttachment{Name: "a", Data: []byte("x")})
			}
		}, apperr.TooLarge, "attachments"},
		{"backslash name", func(r *api.CVDReport) { r.Attachments = []api.CVDAttachment{{Name: `..\x`, Data: []byte("x")}} }, apperr.Invalid, "attachments[0].name"},
		{"empty file", func(r *api.CVDReport) { r.Attachments = []api.CVDAttachment{{Name: "a"}} }, apperr.Invalid, "attachments[0]"},
		{"bad media type", func(r *api.CVDReport) {
			r.Attachments = []api.CVDAttachment{{Name: "a", MediaType: "text/html\r\nX: y", Data: []byte("x")}}
		}, apperr.Invalid, "attachments[0].media_type"},
	} {
		r := report()
		c.mutate(&r)
		_, err := s.Submit(ctx, "192.0.2.1", r)
		if !apperr.Is(err, c.kind) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v naming %s", c.name, err, c.kind, c.field)
		}
	}
	if l, _ := s.List(ctx, "", false); len(l.Cases) != 0 {
		t.Fatalf("refused reports were stored: %d", len(l.Cases))
	}
}

func TestOneAddressOpensAtMostReportsPerHour(t *testing.T) {
	s, c := newService(t, cvd.Options{ReportsPerHour: 3})
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Submit(ctx, "192.0.2.1", report()); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := s.Submit(ctx, "192.0.2.1", report()); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("fourth report: %v", err)
	}
	if _, err := s.Submit(ctx, "198.51.100.9", report()); err != nil {
		t.Fatalf("another address: %v", err)
	}
	c.t = c.t.Add(61 * time.Minute)
	if _, err := s.Submit(ctx, "192.0.2.1", report()); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
}

func TestTheRequestBucketRefusesABurstAndRefills(t *testing.T) {
	s, c := newService(t, cvd.Options{RequestsPerMinute: 6})
	for range 6 {
		if err := s.Allow("192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Allow("192.0.2.1"); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("seventh request: %v", err)
	}
	if err := s.Allow("192.0.2.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	c.t = c.t.Add(10 * time.Second)
	if err := s.Allow("192.0.2.1"); err != nil {
		t.Fatalf("after a refill: %v", err)
	}
}

func TestASecretReadsOnlyItsOwnCase(t *testing.T) {
	s, _ := newService(t, cvd.Options{})
	ctx := context.Background()
	a, _ := s.Submit(ctx, "192.0.2.1", report())
	b, _ := s.Submit(ctx, "192.0.2.1", report())
	if _, err := s.ReporterView(ctx, a.ID, a.Secret); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{a.ID, b.Secret}, {a.ID, ""}, {a.ID, a.Secret + "x"}, {"CVD-NOPE", a.Secret}, {"../" + a.ID, a.Secret}} {
		if _, err := s.ReporterView(ctx, c[0], c[1]); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("%v: %v", c, err)
		}
		if _, err := s.ReporterMessage(ctx, c[0], c[1], "hi"); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("message %v: %v", c, err)
		}
	}
}
