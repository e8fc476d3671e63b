package served_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-ota/vigil/server/internal/served"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
)

type classes map[string][3]string

func (c classes) ClassifyTarget(_ context.Context, path string) (string, string, string, bool) {
	v, ok := c[path]
	return v[0], v[1], v[2], ok
}

// flaky fails the first AddServed, as a database restart would.
type flaky struct {
	state.ServedStore
	failed bool
}

func (f *flaky) AddServed(ctx context.Context, add []state.Served) error {
	if !f.failed {
		f.failed = true
		return errors.New("database restarting")
	}
	return f.ServedStore.AddServed(ctx, add)
}

// Bytes are added up by release and kind; a failed write keeps them for
// the next; a path that is no signed target counts in the metrics only.
func TestServedBytesAreAddedUpByReleaseAndKindAndSurviveAFailedWrite(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	c := served.New(classes{
		"demo-pump/aa.demo-pump-1.1.0.img":                   {"demo-pump", "1.1.0", "full"},
		"demo-pump/bb.demo-pump-1.1.0.img.from-1.0.0.vdelta": {"demo-pump", "1.1.0", "delta"},
	}, &flaky{ServedStore: st}, reg, nil)
	c.Add(ctx, "demo-pump/aa.demo-pump-1.1.0.img", 1000)
	c.Add(ctx, "demo-pump/aa.demo-pump-1.1.0.img", 500) // a resumed download
	c.Add(ctx, "demo-pump/bb.demo-pump-1.1.0.img.from-1.0.0.vdelta", 40)
	c.Add(ctx, "demo-pump/cc.unsigned.img", 7)
	c.Add(ctx, "demo-pump/aa.demo-pump-1.1.0.img", 0) // a HEAD: nothing served
	if err := c.Flush(ctx); err == nil {
		t.Fatal("the failed write was not reported")
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := st.ServedOf(ctx, "demo-pump", "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if got["full"].Bytes != 1500 || got["full"].Requests != 2 || got["delta"].Bytes != 40 || got["delta"].Requests != 1 || len(got) != 2 {
		t.Fatalf("totals after a failed then a good write: %+v", got)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.ServedOf(ctx, "demo-pump", "1.1.0"); again["full"].Bytes != 1500 {
		t.Fatalf("a second flush counted again: %+v", again)
	}
	want := `
# HELP vigil_target_bytes_served_total Bytes of repository targets served, by kind (full, delta, sbom, other).
# TYPE vigil_target_bytes_served_total counter
vigil_target_bytes_served_total{kind="delta"} 40
vigil_target_bytes_served_total{kind="full"} 1500
vigil_target_bytes_served_total{kind="other"} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vigil_target_bytes_served_total"); err != nil {
		t.Fatal(err)
	}
}
