package sqlstore_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/server/internal/state/statetest"
	"github.com/vigil-ota/vigil/test/testsvc"
)

func opener(dsn string) statetest.Opener {
	return func(t *testing.T) state.Store {
		s, err := sqlstore.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestSQLiteConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Opener {
		return opener(filepath.Join(t.TempDir(), "vigil.db"))
	})
}

func TestPostgresConformance(t *testing.T) {
	testsvc.PostgresDSN(t) // skip (or fail in CI) before running subtests
	statetest.Run(t, func(t *testing.T) statetest.Opener {
		return opener(testsvc.PostgresDSN(t))
	})
}

func TestDSNSelectsBackend(t *testing.T) {
	s, err := sqlstore.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Backend() != sqlstore.BackendSQLite {
		t.Fatalf("backend %s", s.Backend())
	}
	v, err := s.SchemaVersion(t.Context())
	if err != nil || v < 1 {
		t.Fatalf("schema version %d, %v", v, err)
	}

	pg := testsvc.PostgresDSN(t)
	p, err := sqlstore.Open(t.Context(), pg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Backend() != sqlstore.BackendPostgres {
		t.Fatalf("backend %s", p.Backend())
	}
}

func TestMalformedDSNIsNamed(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://user@host:notaport/db": "malformed PostgreSQL URL",
		"mysql://x/y":                      "unknown scheme",
		"sqlite://":                        "names no file",
		"/tmp/x.db?_pragma=foo":            "parameters are not accepted",
		"/no/such/dir/vigil.db":            "does not exist",
	} {
		_, err := sqlstore.Open(t.Context(), dsn)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", dsn, err, want)
		}
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := sqlstore.Open(ctx, "postgres://vigil:hunter2@127.0.0.1:1/db?connect_timeout=1")
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func BenchmarkPublishSQLite(b *testing.B) {
	s, err := sqlstore.Open(b.Context(), filepath.Join(b.TempDir(), "vigil.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	statetest.BenchPublish(b, s)
}

func BenchmarkPublishPostgres(b *testing.B) {
	s, err := sqlstore.Open(b.Context(), testsvc.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	statetest.BenchPublish(b, s)
}

// A PostgreSQL that is not up yet is tried again until the start-up
// timeout ends, then named with the setting to change.
func TestUnreachablePostgresIsRetriedUntilTheStartupTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sqlstore.Open(ctx, "postgres://vigil@127.0.0.1:1/db?connect_timeout=1")
	if err == nil || !strings.Contains(err.Error(), "not reachable within the start-up timeout (startup_timeout)") {
		t.Fatalf("%v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("gave up after %s, before the start-up timeout", waited)
	}
}

// A server that answers but lacks the database says so at once.
func TestMissingPostgresDatabaseIsNamed(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/vigil_no_such_database"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = sqlstore.Open(ctx, u.String())
	if err == nil || !strings.Contains(err.Error(), "the database does not exist") {
		t.Fatalf("%v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("a missing database was retried like an unreachable server")
	}
}
