package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-ota/vigil/agent/internal/events"
	"github.com/vigil-ota/vigil/api"
)

type recorder struct {
	fail    bool
	batches [][]api.DeviceEvent
}

func (r *recorder) SendEvents(_ context.Context, b api.EventBatch) (api.EventBatchResponse, error) {
	if r.fail {
		return api.EventBatchResponse{}, errors.New("server unreachable")
	}
	r.batches = append(r.batches, b.Events)
	return api.EventBatchResponse{Accepted: len(b.Events)}, nil
}

func ev(id, state string, at time.Time) api.DeviceEvent {
	return api.DeviceEvent{ID: id, DeviceID: "pump-1", State: api.InstallState(state), Time: at}
}

func TestEventsSurviveOfflinePeriodsAndRestartsInOrder(t *testing.T) {
	dir := t.TempDir()
	q, _ := events.Open(dir)
	t0 := time.Now()
	q.Add(ev("01", "downloading", t0))
	q.Add(ev("02", "verified", t0.Add(time.Second)))
	q.Add(ev("02", "verified", t0.Add(time.Second))) // re-emitted after a crash
	r := &recorder{fail: true}
	if _, err := q.Flush(context.Background(), r); err == nil {
		t.Fatal("flush to an unreachable server succeeded")
	}
	q2, _ := events.Open(dir) // a restart
	pending, _, _ := q2.Pending()
	if len(pending) != 2 || pending[0].State != "downloading" {
		t.Fatalf("pending after restart: %+v", pending)
	}
	r.fail = false
	if n, err := q2.Flush(context.Background(), r); err != nil || n != 2 {
		t.Fatalf("flushed %d, %v", n, err)
	}
	if pending, _, _ := q2.Pending(); len(pending) != 0 {
		t.Fatalf("acknowledged events still pending: %v", pending)
	}
	hist, _ := events.History(dir, 10)
	if len(hist) != 2 {
		t.Fatalf("history %v", hist)
	}
}

func TestLargeBacklogsGoInBatches(t *testing.T) {
	q, _ := events.Open(t.TempDir())
	t0 := time.Now()
	for i := range events.MaxBatch + 5 {
		q.Add(ev(events.ID("pump-1", "t", "s", string(rune(i))), "downloading", t0.Add(time.Duration(i))))
	}
	r := &recorder{}
	q.Flush(context.Background(), r)
	if len(r.batches) != 2 || len(r.batches[0]) != events.MaxBatch {
		t.Fatalf("batches %d", len(r.batches))
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	if d := events.Backoff(1); d < events.MinBackoff*3/4 || d > events.MinBackoff*5/4 {
		t.Fatalf("first backoff %v", d)
	}
	if d := events.Backoff(50); d > events.MaxBackoff*5/4 || d < events.MaxBackoff*3/4 {
		t.Fatalf("capped backoff %v", d)
	}
}
