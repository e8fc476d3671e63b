package statetest

import (
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/state"
)

func runVigilance(t *testing.T, one func(t *testing.T) state.Store) {
	t.Run("VulnRecordsAreReplacedWholeAndFoundByKeyAndAlias", func(t *testing.T) { testVulnRecords(t, one(t)) })
	t.Run("KEVCatalogIsReplacedWhole", func(t *testing.T) { testKEV(t, one(t)) })
	t.Run("SBOMComponentsAreFoundByKeyAcrossReleases", func(t *testing.T) { testSBOMs(t, one(t)) })
	t.Run("FindingsKeepTriageWhenTheirDataChanges", func(t *testing.T) { testFindings(t, one(t)) })
	t.Run("InstalledCountsGroupBySiteAndVersion", func(t *testing.T) { testInstalledCounts(t, one(t)) })
	t.Run("FeedStateIsUpserted", func(t *testing.T) { testFeedState(t, one(t)) })
	t.Run("DevicesArePagedBySiteAndTheirLatestEventsRead", func(t *testing.T) { testDevicePages(t, one(t)) })
}

var (
	keyOpenSSL = state.IndexKey{Kind: "cpe", K1: "openssl", K2: "openssl"}
	keyZlib    = state.IndexKey{Kind: "cpe", K1: "zlib", K2: "zlib"}
	keyGoNet   = state.IndexKey{Kind: "pkg", K1: "Go", K2: "golang.org/x/net"}
)

func testVulnRecords(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	recs := []state.VulnRecord{
		{Source: "nvd", ID: "CVE-2014-0160", Hash: "h1", Data: []byte(`{"id":"CVE-2014-0160"}`), Keys: []state.IndexKey{keyOpenSSL, keyOpenSSL}, Imported: now},
		{Source: "osv", ID: "GO-2023-2102", Hash: "h2", Data: []byte(`{"id":"GO-2023-2102"}`), Keys: []state.IndexKey{keyGoNet}, Aliases: []string{"CVE-2023-44487", "GHSA-qppj-fm5r-hxr3"}, Imported: now},
	}
	if err := s.PutRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	h, err := s.RecordHashes(ctx, "nvd", []string{"CVE-2014-0160", "CVE-2099-0001", "GO-2023-2102"})
	if err != nil || len(h) != 1 || h["CVE-2014-0160"] != "h1" {
		t.Fatalf("hashes %v %v", h, err)
	}
	if n, err := s.CountRecords(ctx, "osv"); err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
	got, err := s.RecordsByKeys(ctx, []state.IndexKey{keyOpenSSL, keyZlib})
	if err != nil || len(got) != 1 || got[0].ID != "CVE-2014-0160" || string(got[0].Data) != `{"id":"CVE-2014-0160"}` || !got[0].Imported.Equal(now) {
		t.Fatalf("by key %+v %v", got, err)
	}
	if got, _ := s.RecordsByAlias(ctx, "CVE-2023-44487"); len(got) != 1 || got[0].ID != "GO-2023-2102" {
		t.Fatalf("by alias %+v", got)
	}
	if got, _ := s.RecordsByAlias(ctx, "GO-2023-2102"); len(got) != 1 {
		t.Fatalf("a record is not found by its own id: %+v", got)
	}
	// Replacing a record replaces its keys and aliases too.
	recs[1].Keys, recs[1].Aliases, recs[1].Withdrawn, recs[1].Hash = []state.IndexKey{keyZlib}, nil, true, "h3"
	if err := s.PutRecords(ctx, recs[1:]); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RecordsByKeys(ctx, []state.IndexKey{keyGoNet}); len(got) != 0 {
		t.Fatalf("an old key still finds the record: %+v", got)
	}
	if got, _ := s.RecordsByAlias(ctx, "CVE-2023-44487"); len(got) != 0 {
		t.Fatalf("an old alias still finds the record: %+v", got)
	}
	if got, _ := s.RecordsByKeys(ctx, []state.IndexKey{keyZlib}); len(got) != 1 || !got[0].Withdrawn || got[0].Hash != "h3" {
		t.Fatalf("replaced record %+v", got)
	}
	// Many keys in one lookup (more than one query's worth).
	many := make([]state.IndexKey, 0, 450)
	for i := 0; i < 450; i++ {
		many = append(many, state.IndexKey{Kind: "pkg", K1: "Go", K2: "example.com/m" + string(rune('a'+i%26)) + time.Duration(i).String()})
	}
	if got, err := s.RecordsByKeys(ctx, append(many, keyOpenSSL)); err != nil || len(got) != 1 {
		t.Fatalf("many keys: %d %v", len(got), err)
	}
}

func testKEV(t *testing.T, s state.Store) {
	ctx := t.Context()
	if v, m, err := s.KEV(ctx); err != nil || v != "" || len(m) != 0 {
		t.Fatalf("empty KEV: %q %v %v", v, m, err)
	}
	if err := s.PutKEV(ctx, "2025.08.24", map[string][]byte{"CVE-1": []byte(`{"a":1}`), "CVE-2": []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKEV(ctx, "2025.08.25", map[string][]byte{"CVE-2": []byte(`{"b":2}`)}); err != nil {
		t.Fatal(err)
	}
	v, m, err := s.KEV(ctx)
	if err != nil || v != "2025.08.25" || len(m) != 1 || string(m["CVE-2"]) != `{"b":2}` {
		t.Fatalf("KEV %q %v %v", v, m, err)
	}
}

func testSBOMs(t *testing.T, s state.Store) {
	ctx := t.Context()
	comp := func(version, ref, v string, keys ...state.IndexKey) state.SBOMComponent {
		return state.SBOMComponent{Product: "demo-pump", Version: version, BOMRef: ref, Name: "openssl", CompVersion: v, CPE: "cpe:2.3:a:openssl:openssl:" + v, Keys: keys}
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		sb := state.SBOMRecord{Product: "demo-pump", Version: v, Target: "demo-pump/demo-pump-" + v + ".cdx.json", SHA256: digest(v), SpecVersion: "1.5", Indexed: time.Now(),
			Components: []state.SBOMComponent{comp(v, "a", "1.0.1f", keyOpenSSL), comp(v, "b", "1.2.11", keyZlib)}}
		if err := s.PutSBOM(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ComponentsByKeys(ctx, []state.IndexKey{keyOpenSSL})
	if err != nil || len(got) != 2 || got[0].BOMRef != "a" || len(got[0].Keys) != 1 || got[0].Keys[0] != keyOpenSSL {
		t.Fatalf("by key %+v %v", got, err)
	}
	// Replacing an SBOM replaces its components and keys.
	if err := s.PutSBOM(ctx, state.SBOMRecord{Product: "demo-pump", Version: "1.1.0", Target: "t", SHA256: digest("x"), SpecVersion: "1.6",
		Components: []state.SBOMComponent{comp("1.1.0", "c", "1.3.1", keyZlib)}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ComponentsByKeys(ctx, []state.IndexKey{keyOpenSSL}); len(got) != 1 || got[0].Version != "1.0.0" {
		t.Fatalf("after replace %+v", got)
	}
	one, err := s.SBOM(ctx, "demo-pump", "1.1.0")
	if err != nil || len(one.Components) != 1 || one.SpecVersion != "1.6" {
		t.Fatalf("SBOM %+v %v", one, err)
	}
	if _, err := s.SBOM(ctx, "demo-pump", "9.9.9"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("missing SBOM: %v", err)
	}
	if all, _ := s.SBOMs(ctx, "demo-pump"); len(all) != 2 || all[0].Version != "1.0.0" || all[0].Components != nil {
		t.Fatalf("SBOMs %+v", all)
	}
	if all, _ := s.SBOMs(ctx, "other"); len(all) != 0 {
		t.Fatalf("SBOMs of another product %+v", all)
	}
}

func testFindings(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	f := state.FindingRecord{ID: "F-1", VulnSource: "nvd", VulnID: "CVE-2014-0160", Product: "demo-pump", Version: "1.0.0", Data: []byte(`{"v":1}`), KEV: true,
		Status: "open", Risk: "untriaged", Aware: now, Created: now, Updated: now}
	if isNew, err := s.PutFinding(ctx, f); err != nil || !isNew {
		t.Fatalf("new finding %v %v", isNew, err)
	}
	f.Risk, f.Rationale, f.TriagedBy, f.Triaged, f.Notified = "uncontrolled", "reachable", "token:t1:alice", now, now.Add(time.Hour)
	if err := s.UpdateTriage(ctx, f); err != nil {
		t.Fatal(err)
	}
	// New finding data keeps the triage and the awareness date.
	g := state.FindingRecord{ID: "F-1", VulnSource: "nvd", VulnID: "CVE-2014-0160", Product: "demo-pump", Version: "1.0.0", Data: []byte(`{"v":2}`),
		Status: "closed", ClosedReason: "rejected", Closed: now, Risk: "untriaged", Aware: now.Add(24 * time.Hour), Updated: now}
	if isNew, err := s.PutFinding(ctx, g); err != nil || isNew {
		t.Fatalf("update finding %v %v", isNew, err)
	}
	got, err := s.Finding(ctx, "F-1")
	if err != nil || string(got.Data) != `{"v":2}` || got.Status != "closed" || got.Risk != "uncontrolled" || got.Rationale != "reachable" ||
		!got.Aware.Equal(now) || !got.Notified.Equal(now.Add(time.Hour)) || got.TriagedBy != "token:t1:alice" || got.KEV {
		t.Fatalf("finding %+v %v", got, err)
	}
	if err := s.UpdateTriage(ctx, state.FindingRecord{ID: "F-none"}); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("triage of a missing finding: %v", err)
	}
	f2 := f
	f2.ID, f2.Version, f2.Status, f2.KEV, f2.Risk = "F-2", "1.0.1", "open", true, "untriaged"
	if _, err := s.PutFinding(ctx, f2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ff   state.FindingFilter
		want int
	}{
		{state.FindingFilter{}, 2}, {state.FindingFilter{Status: "open"}, 1}, {state.FindingFilter{Version: "1.0.0"}, 1},
		{state.FindingFilter{KEVOnly: true}, 1}, {state.FindingFilter{VulnID: "CVE-2014-0160", Product: "demo-pump"}, 2},
		{state.FindingFilter{Risk: "uncontrolled"}, 1}, {state.FindingFilter{Limit: 1}, 1},
	} {
		if got, err := s.Findings(ctx, c.ff); err != nil || len(got) != c.want {
			t.Errorf("filter %+v: %d findings, want %d (%v)", c.ff, len(got), c.want, err)
		}
	}
	if got, _ := s.Findings(ctx, state.FindingFilter{NoData: true}); len(got) != 2 || len(got[0].Data) != 0 || got[0].Risk == "" {
		t.Fatalf("NoData %+v", got)
	}
}

func testInstalledCounts(t *testing.T, s state.Store) {
	ctx := t.Context()
	for _, site := range []string{"north", "south"} {
		if err := s.PutSite(ctx, state.Site{Name: site, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	var devs []state.Device
	for i, c := range []struct{ site, version string }{{"north", "1.0.0"}, {"north", "1.0.0"}, {"north", "1.1.0"}, {"south", "1.0.0"}, {"south", "1.0.0"}} {
		devs = append(devs, state.Device{ID: "D" + string(rune('0'+i)), Product: "demo-pump", Hardware: "rev-b", Site: c.site, PublicKey: "AAAA", Installed: c.version})
	}
	devs = append(devs, state.Device{ID: "OTHER", Product: "other", Hardware: "x", Site: "north", PublicKey: "AAAA", Installed: "1.0.0"})
	if err := s.AddDevices(ctx, devs); err != nil {
		t.Fatal(err)
	}
	if err := s.Decommission(ctx, "D4"); err != nil {
		t.Fatal(err)
	}
	got, err := s.InstalledCounts(ctx, "demo-pump")
	want := []state.InstalledCount{{Site: "north", Version: "1.0.0", Count: 2}, {Site: "north", Version: "1.1.0", Count: 1}, {Site: "south", Version: "1.0.0", Count: 1}}
	if err != nil || len(got) != len(want) {
		t.Fatalf("counts %+v %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
	}
}

func testFeedState(t *testing.T, s state.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	for _, st := range []state.FeedState{{Name: "osv x", ETag: `"1"`, Fetched: now}, {Name: "osv x", ETag: `"2"`, LastModified: "Mon", Fetched: now, Succeeded: now, Message: "ok"}} {
		if err := s.PutFeedState(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.FeedStates(ctx)
	if err != nil || len(all) != 1 || all[0].ETag != `"2"` || !all[0].Succeeded.Equal(now) || all[0].Message != "ok" {
		t.Fatalf("feed state %+v %v", all, err)
	}
}

func testDevicePages(t *testing.T, s state.Store) {
	ctx := t.Context()
	for _, site := range []string{"north", "south"} {
		if err := s.PutSite(ctx, state.Site{Name: site, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	var devs []state.Device
	for i := range 25 {
		site, area := "north", "icu"
		if i%5 == 0 {
			site, area = "south", "ward"
		}
		devs = append(devs, state.Device{ID: "PUMP-" + string(rune('A'+i)), Product: "demo-pump", Hardware: "rev-b", Site: site, CareArea: area, PublicKey: "AAAA", Installed: "1.0.0"})
	}
	if err := s.AddDevices(ctx, devs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q           state.DeviceQuery
		first, want string
		n, total    int
	}{
		{state.DeviceQuery{Limit: 10}, "PUMP-B", "", 10, 25},
		{state.DeviceQuery{Sites: []string{"south"}}, "PUMP-A", "", 5, 5},
		{state.DeviceQuery{Sites: []string{}}, "", "", 0, 0},
		{state.DeviceQuery{CareArea: "icu", Offset: 18, Limit: 10}, "PUMP-X", "", 2, 20},
		{state.DeviceQuery{Prefix: "PUMP-C"}, "PUMP-C", "", 1, 1},
		{state.DeviceQuery{Prefix: "%"}, "", "", 0, 0},
	} {
		got, total, err := s.DevicePage(ctx, c.q)
		if err != nil || len(got) != c.n || total != c.total || (c.n > 0 && got[0].ID != c.first) {
			first := ""
			if len(got) > 0 {
				first = got[0].ID
			}
			t.Errorf("query %+v: %d devices (first %s) of %d, want %d (first %s) of %d (%v)", c.q, len(got), first, total, c.n, c.first, c.total, err)
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	evs := []state.DeviceEvent{
		{ID: "e1", DeviceID: "PUMP-A", State: "downloading", Time: now.Add(-time.Minute)},
		{ID: "e2", DeviceID: "PUMP-A", State: "committed", Version: "1.1.0", Time: now},
		{ID: "e3", DeviceID: "PUMP-B", State: "deferred", Reason: "in clinical use", Time: now},
	}
	if _, err := s.AddDeviceEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	latest, err := s.LatestEvents(ctx, []string{"PUMP-A", "PUMP-B", "PUMP-C"})
	if err != nil || len(latest) != 2 || latest["PUMP-A"].ID != "e2" || latest["PUMP-B"].Reason != "in clinical use" {
		t.Fatalf("latest %+v %v", latest, err)
	}
}
