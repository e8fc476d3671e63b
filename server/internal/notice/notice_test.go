package notice_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/notice"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

type findings struct{ notified map[string]time.Time }

func (f *findings) Finding(_ context.Context, id string) (api.FindingDetail, error) {
	if id != "F-1" {
		return api.FindingDetail{}, apperr.New(apperr.NotFound, "no finding %q", id)
	}
	return api.FindingDetail{}, nil
}

func (f *findings) NoticeSent(_ context.Context, id string, t time.Time) error {
	f.notified[id] = t
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T) (*notice.Service, *clock, *findings) {
	st, err := sqlstore.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, s := range []string{"north", "south"} {
		if err := st.PutSite(t.Context(), state.Site{Name: s, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	f := &findings{notified: map[string]time.Time{}}
	return notice.New(st, notice.Options{Findings: f, Sites: st, RetryBase: time.Minute, Now: c.now}), c, f
}

const secret = "0123456789abcdef-secret"

func TestSiteContactsRefuseInjectionAndWeakSecrets(t *testing.T) {
	s, _, _ := setup(t)
	ctx := context.Background()
	for name, in := range map[string]api.SiteContacts{
		"javascript URL":      {WebhookURL: "javascript:alert(1)", WebhookSecret: secret},
		"short secret":        {WebhookURL: "https://it.example/hook", WebhookSecret: "short"},
		"secret without URL":  {WebhookSecret: secret},
		"header injection":    {Email: "it@north.example\r\nBcc: all@evil.example"},
		"two addresses":       {Email: "a@north.example, b@evil.example"},
		"display name":        {Email: "IT <it@north.example>"},
		"not an address":      {Email: "north"},
		"site path traversal": {Email: "it@north.example"},
	} {
		site := "north"
		if name == "site path traversal" {
			site = "../north"
		}
		if err := s.PutContacts(ctx, site, in); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := s.PutContacts(ctx, "north", api.SiteContacts{WebhookURL: "https://it.example/hook", WebhookSecret: secret, Email: "it@north.example"}); err != nil {
		t.Fatal(err)
	}
	// Changing only the URL keeps the secret; it is never shown again.
	if err := s.PutContacts(ctx, "north", api.SiteContacts{WebhookURL: "https://it.example/hook2", Email: "it@north.example"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Contacts(ctx, "north")
	if err != nil || got.WebhookSecret != "" || !got.SecretSet || got.WebhookURL != "https://it.example/hook2" {
		t.Fatalf("%+v %v", got, err)
	}
	itCtx := operator.WithPrincipal(ctx, operator.Principal{Role: operator.RoleSiteIT, Sites: []string{"south"}})
	if err := s.PutContacts(itCtx, "north", api.SiteContacts{Email: "x@y.example"}); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("south's IT changing north: %v", err)
	}
}

// A webhook that fails is retried with doubling waits, then given up
// after MaxAttempts; a receiver that recovers gets the notice once.
func TestDeliveriesAreRetriedWithBackoffThenGivenUp(t *testing.T) {
	s, c, f := setup(t)
	ctx := context.Background()
	var calls, failFor atomic.Int32
	failFor.Store(2)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= failFor.Load() {
			http.Error(w, "down", http.StatusBadGateway)
		}
	}))
	defer hook.Close()
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "gone", http.StatusGone) }))
	defer dead.Close()
	s.PutContacts(ctx, "north", api.SiteContacts{WebhookURL: hook.URL, WebhookSecret: secret})
	s.PutContacts(ctx, "south", api.SiteContacts{WebhookURL: dead.URL, WebhookSecret: secret})
	n, err := s.Create(ctx, api.NoticeIn{Finding: "F-1", Sites: []string{"all"}, Severity: "high", Title: "Update", Text: "Install 1.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !f.notified["F-1"].Equal(c.t) {
		t.Fatal("the finding's notice clock did not stop")
	}
	waits := []time.Duration{0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute}
	for i, w := range waits {
		c.t = c.t.Add(w)
		if _, err := s.Deliver(ctx); err != nil {
			t.Fatal(i, err)
		}
		// Nothing is due a second before the next wait ends.
		if i+1 < len(waits) {
			c.t = c.t.Add(waits[i+1] - time.Second)
			if made, _ := s.Deliver(ctx); made != 0 {
				t.Fatalf("attempt %d: %d attempts made before the backoff ended", i, made)
			}
			c.t = c.t.Add(-(waits[i+1] - time.Second))
		}
	}
	got, _ := s.Get(ctx, n.ID)
	by := map[string]api.NoticeDelivery{}
	for _, d := range got.Deliveries {
		by[d.Site] = d
	}
	if d := by["north"]; d.Webhook != notice.ChannelDelivered || d.WebhookTries != 3 || calls.Load() != 3 {
		t.Fatalf("north %+v after %d calls", d, calls.Load())
	}
	if d := by["south"]; d.Webhook != notice.ChannelFailed || d.WebhookTries != notice.MaxAttempts || !strings.Contains(d.WebhookError, "410") {
		t.Fatalf("south %+v", d)
	}
	c.t = c.t.Add(24 * time.Hour)
	if made, _ := s.Deliver(ctx); made != 0 {
		t.Fatal("a finished delivery was tried again")
	}
}

func TestSiteITSeesAndAcknowledgesOnlyItsOwnSites(t *testing.T) {
	s, c, _ := setup(t)
	ctx := context.Background()
	n, err := s.Create(ctx, api.NoticeIn{Finding: "F-1", Sites: []string{"north", "south"}, Severity: "high", Title: "t", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	north := operator.WithPrincipal(ctx, operator.Principal{Name: "north-it", Role: operator.RoleSiteIT, Sites: []string{"north"}})
	got, err := s.Get(north, n.ID)
	if err != nil || len(got.Deliveries) != 1 || got.Deliveries[0].Site != "north" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := s.Ack(north, n.ID, api.NoticeAckIn{Site: "south"}); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("north acknowledging for south: %v", err)
	}
	if _, err := s.Ack(north, n.ID, api.NoticeAckIn{Comment: "done"}); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(8 * 24 * time.Hour)
	over, _ := s.List(ctx, false, true)
	if len(over.Notices) != 1 || len(over.Notices[0].Deliveries) != 1 || over.Notices[0].Deliveries[0].Site != "south" {
		t.Fatalf("overdue %+v", over)
	}
	other := operator.WithPrincipal(ctx, operator.Principal{Role: operator.RoleSiteIT, Sites: []string{"east"}})
	if _, err := s.Get(other, n.ID); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("a site the notice was not sent to: %v", err)
	}
	for name, in := range map[string]api.NoticeIn{
		"no finding or incident": {Sites: []string{"all"}, Severity: "high", Title: "t", Text: "x"},
		"both":                   {Finding: "F-1", Incident: "INC-1", Sites: []string{"all"}, Severity: "high", Title: "t", Text: "x"},
		"unknown site":           {Finding: "F-1", Sites: []string{"east"}, Severity: "high", Title: "t", Text: "x"},
		"bad severity":           {Finding: "F-1", Sites: []string{"all"}, Severity: "urgent", Title: "t", Text: "x"},
		"empty text":             {Finding: "F-1", Sites: []string{"all"}, Severity: "high", Title: "t", Text: " "},
	} {
		if _, err := s.Create(ctx, in); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := s.Create(ctx, api.NoticeIn{Finding: "F-404", Sites: []string{"all"}, Severity: "high", Title: "t", Text: "x"}); !apperr.Is(err, apperr.NotFound) {
		t.Errorf("unknown finding: %v", err)
	}
}
