package statetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

func runResponse(t *testing.T, one func(t *testing.T) state.Store) {
	t.Run("CasesAreStoredWithAttachmentsListedAndUpdatedByRevision", func(t *testing.T) { testCases(t, one(t)) })
	t.Run("IncidentsRefuseALostUpdate", func(t *testing.T) { testIncidents(t, one(t)) })
	t.Run("NoticesAndDeliveriesAreListedBySiteAndDueTime", func(t *testing.T) { testNotices(t, one(t)) })
	t.Run("ReleaseHistoryRecordsPublishAndRevoke", func(t *testing.T) { testReleaseHistory(t, one(t)) })
	t.Run("CommitTimesAreTheFirstCommitPerDeviceAndVersion", func(t *testing.T) { testCommitTimes(t, one(t)) })
}

var rt0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func doc(id, status, key string, created time.Time, data string) state.Doc {
	return state.Doc{ID: id, Status: status, Key: key, Created: created, Updated: created, Data: []byte(data)}
}

func testCases(t *testing.T, s state.Store) {
	ctx := t.Context()
	c := doc("CVD-1", "received", "192.0.2.1", rt0, `{"title":"x"}`)
	c.Due = rt0.Add(72 * time.Hour)
	atts := []state.Attachment{{Index: 0, Name: "poc.txt", MediaType: "text/plain", SHA256: "ab", Data: []byte("<script>")}}
	if err := s.CreateCase(ctx, c, atts); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCase(ctx, c, nil); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("a second case with the same id: %v", err)
	}
	if err := s.CreateCase(ctx, doc("CVD-2", "received", "192.0.2.1", rt0.Add(time.Hour), `{}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCase(ctx, doc("CVD-3", "received", "198.51.100.7", rt0.Add(2*time.Hour), `{}`), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Case(ctx, "CVD-1")
	if err != nil || got.Rev != 1 || string(got.Data) != `{"title":"x"}` || !got.Due.Equal(c.Due) || !got.Created.Equal(rt0) {
		t.Fatalf("case %+v %v", got, err)
	}
	if _, err := s.Case(ctx, "CVD-9"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("missing case: %v", err)
	}
	from, _ := s.Cases(ctx, state.DocFilter{Key: "192.0.2.1", Since: rt0.Add(30 * time.Minute)})
	if len(from) != 1 || from[0].ID != "CVD-2" {
		t.Fatalf("cases from one address since a time: %+v", from)
	}
	due, _ := s.Cases(ctx, state.DocFilter{DueBefore: rt0.Add(100 * time.Hour)})
	if len(due) != 1 || due[0].ID != "CVD-1" {
		t.Fatalf("due cases: %+v", due)
	}
	got.Status, got.Due, got.Data = "acknowledged", time.Time{}, []byte(`{"title":"y"}`)
	rev, err := s.UpdateCase(ctx, got)
	if err != nil || rev != 2 {
		t.Fatalf("update: %d %v", rev, err)
	}
	if _, err := s.UpdateCase(ctx, got); !apperr.Is(err, apperr.Conflict) { // still at rev 1
		t.Fatalf("a stale update: %v", err)
	}
	if acked, _ := s.Cases(ctx, state.DocFilter{Status: "acknowledged"}); len(acked) != 1 {
		t.Fatalf("by status: %+v", acked)
	}
	a, err := s.CaseAttachments(ctx, "CVD-1")
	if err != nil || len(a) != 1 || string(a[0].Data) != "<script>" || a[0].Name != "poc.txt" {
		t.Fatalf("attachments %+v %v", a, err)
	}
}

func testIncidents(t *testing.T, s state.Store) {
	ctx := t.Context()
	if err := s.CreateIncident(ctx, doc("INC-1", "open", "demo-pump", rt0, `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateIncident(ctx, doc("INC-2", "closed", "demo-pump", rt0.Add(time.Hour), `{}`)); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Incident(ctx, "INC-1")
	b, _ := s.Incident(ctx, "INC-1")
	a.Data = []byte(`{"a":1}`)
	if _, err := s.UpdateIncident(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Data = []byte(`{"b":1}`)
	if _, err := s.UpdateIncident(ctx, b); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("the second of two concurrent updates: %v", err)
	}
	if got, _ := s.Incident(ctx, "INC-1"); string(got.Data) != `{"a":1}` {
		t.Fatalf("stored %s", got.Data)
	}
	open, _ := s.Incidents(ctx, state.DocFilter{NotStatus: "closed"})
	if len(open) != 1 || open[0].ID != "INC-1" {
		t.Fatalf("open incidents %+v", open)
	}
	period, _ := s.Incidents(ctx, state.DocFilter{Since: rt0.Add(time.Minute), Until: rt0.Add(2 * time.Hour)})
	if len(period) != 1 || period[0].ID != "INC-2" {
		t.Fatalf("incidents in a period %+v", period)
	}
}

func testNotices(t *testing.T, s state.Store) {
	ctx := t.Context()
	n := doc("N-1", "", "INC-1", rt0, `{"text":"patch"}`)
	ds := []state.Doc{doc("N-1/north", "unacked", "north", rt0, `{}`), doc("N-1/south", "unacked", "south", rt0, `{}`)}
	ds[0].Due = rt0
	if err := s.CreateNotice(ctx, n, ds); err != nil {
		t.Fatal(err)
	}
	// A notice whose deliveries fail to store leaves nothing behind.
	bad := doc("N-2", "", "INC-1", rt0, `{}`)
	if err := s.CreateNotice(ctx, bad, []state.Doc{doc("N-2/x", "unacked", "x", rt0, ""), doc("N-2/x", "unacked", "x", rt0, "")}); err == nil {
		t.Fatal("duplicate deliveries accepted")
	}
	if _, err := s.Notice(ctx, "N-2"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("a failed notice was kept: %v", err)
	}
	if got, _ := s.Notices(ctx, state.DocFilter{Key: "INC-1"}); len(got) != 1 {
		t.Fatalf("notices of the incident %+v", got)
	}
	mine, _ := s.Deliveries(ctx, state.DocFilter{Keys: []string{"south"}})
	if len(mine) != 1 || mine[0].ID != "N-1/south" {
		t.Fatalf("deliveries of a site %+v", mine)
	}
	of, _ := s.Deliveries(ctx, state.DocFilter{IDPrefix: "N-1/"})
	if len(of) != 2 {
		t.Fatalf("deliveries of a notice %+v", of)
	}
	due, _ := s.Deliveries(ctx, state.DocFilter{DueBefore: rt0.Add(time.Second)})
	if len(due) != 1 || due[0].ID != "N-1/north" {
		t.Fatalf("due deliveries %+v", due)
	}
	d := due[0]
	d.Status, d.Due = "acked", time.Time{}
	if _, err := s.UpdateDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.Deliveries(ctx, state.DocFilter{Status: "unacked"}); len(un) != 1 || un[0].Key != "south" {
		t.Fatalf("unacknowledged %+v", un)
	}
	if err := s.PutSiteContact(ctx, state.Doc{ID: "north", Created: rt0, Updated: rt0, Data: []byte(`{"email":"a@b"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSiteContact(ctx, state.Doc{ID: "north", Created: rt0, Updated: rt0, Data: []byte(`{"email":"c@d"}`)}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.SiteContact(ctx, "north"); err != nil || string(c.Data) != `{"email":"c@d"}` {
		t.Fatalf("contacts %+v %v", c, err)
	}
	if _, err := s.SiteContact(ctx, "south"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("no contacts: %v", err)
	}
}

func testReleaseHistory(t *testing.T, s state.Store) {
	ctx := t.Context()
	note := func(n state.ReleaseNote) {
		t.Helper()
		err := s.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error { return tx.NoteRelease(ctx, n) })
		if err != nil {
			t.Fatal(err)
		}
	}
	note(state.ReleaseNote{Product: "demo-pump", Version: "1.0.0", Target: "demo-pump/a", Published: rt0})
	note(state.ReleaseNote{Product: "demo-pump", Version: "1.1.0", Target: "demo-pump/b", Published: rt0.Add(time.Hour)})
	note(state.ReleaseNote{Product: "other", Version: "1.0.0", Target: "other/c", Published: rt0})
	note(state.ReleaseNote{Product: "demo-pump", Version: "1.1.0", Revoked: rt0.Add(2 * time.Hour)})
	if err := s.Publish(ctx, func(ctx context.Context, tx state.PublishTx) error {
		n, err := tx.Release(ctx, "demo-pump", "1.1.0")
		if err != nil || n.Revoked.IsZero() || n.Target != "demo-pump/b" {
			t.Errorf("release in the transaction: %+v %v", n, err)
		}
		if _, err := tx.Release(ctx, "demo-pump", "9.9.9"); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("a release never published: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Releases(ctx, "demo-pump")
	if err != nil || len(got) != 2 || got[0].Version != "1.0.0" || !got[1].Revoked.Equal(rt0.Add(2*time.Hour)) || !got[1].Published.Equal(rt0.Add(time.Hour)) {
		t.Fatalf("history %+v %v", got, err)
	}
	if all, _ := s.Releases(ctx, ""); len(all) != 3 {
		t.Fatalf("every product %+v", all)
	}
}

func testCommitTimes(t *testing.T, s state.Store) {
	ctx := t.Context()
	if err := s.PutSite(ctx, state.Site{Name: "north", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDevices(ctx, []state.Device{{ID: "P1", Product: "demo-pump", Hardware: "rev-b", Site: "north", PublicKey: "AAAA", Installed: "1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	evs := []state.DeviceEvent{
		{ID: "c1", DeviceID: "P1", Version: "1.1.0", State: "committed", Time: rt0.Add(time.Hour)},
		{ID: "c2", DeviceID: "P1", Version: "1.1.0", State: "committed", Time: rt0.Add(2 * time.Hour)},
		{ID: "c3", DeviceID: "P1", Version: "1.1.0", State: "installing", Time: rt0},
		{ID: "c4", DeviceID: "OTHER", Version: "1.1.0", State: "committed", Time: rt0},
	}
	if _, err := s.AddDeviceEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.CommitTimes(ctx, "demo-pump")
	if err != nil || len(got) != 1 || got[0].Device != "P1" || got[0].Site != "north" || !got[0].At.Equal(rt0.Add(time.Hour)) {
		t.Fatalf("commit times %+v %v", got, err)
	}
}
