package journal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ota/vigil/agent/internal/journal"
)

func TestMissingJournalIsIdle(t *testing.T) {
	s, err := journal.Load(t.TempDir())
	if err != nil || s.Phase != journal.Idle {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestSaveThenLoadRoundTripsAndCountsWrites(t *testing.T) {
	dir := t.TempDir()
	rel := &journal.Release{Target: "demo-pump/x.img", Version: "1.1.0", SHA256: "ab", Length: 3}
	s, err := journal.Save(dir, journal.State{Phase: journal.Staging, Release: rel, From: "a", To: "b", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := journal.Save(dir, s)
	if err != nil || s2.Seq != 2 {
		t.Fatalf("seq %d %v", s2.Seq, err)
	}
	got, err := journal.Load(dir)
	if err != nil || got.Phase != journal.Staging || got.To != "b" || got.Release.Version != "1.1.0" || got.Seq != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".journal.json.tmp-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestInconsistentStatesAreRefused(t *testing.T) {
	rel := &journal.Release{Target: "t", Version: "1.0.0"}
	for _, s := range []journal.State{
		{Phase: "exploded"},
		{Phase: journal.Downloading},
		{Phase: journal.Staging, Release: rel, From: "a", To: "a"},
		{Phase: journal.Switched, Release: rel},
	} {
		if _, err := journal.Save(t.TempDir(), s); err == nil {
			t.Errorf("saved %+v", s)
		}
	}
}

func TestCorruptJournalIsReportedNotGuessed(t *testing.T) {
	for _, body := range []string{"{not json", `{"phase":"switched"}`} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, journal.FileName), []byte(body), 0o600)
		if _, err := journal.Load(dir); !errors.Is(err, journal.ErrCorrupt) {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func TestOnlyOneAgentPerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	l, err := journal.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := journal.Lock(dir); err == nil {
		t.Fatal("a second lock succeeded")
	}
}
