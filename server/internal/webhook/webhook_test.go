package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-ota/vigil/api/webhooksig"
	"github.com/vigil-ota/vigil/server/internal/webhook"
)

const secret = "0123456789abcdef-secret"

// A receiver that fails the first two deliveries gets the event on the
// third try, with the same delivery id each time, signed so it verifies.
func TestAFailedDeliveryIsRetriedWithTheSameIDUntilItArrives(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		ids = append(ids, r.Header.Get(webhooksig.HeaderID))
		n := len(ids)
		mu.Unlock()
		if err := webhooksig.Verify([]byte(secret), r.Header, body, time.Now(), webhooksig.DefaultTolerance); err != nil {
			t.Errorf("delivery %d does not verify: %v", n, err)
		}
		if n < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		got <- body
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	s, err := webhook.New(srv.URL, secret, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetRetryBase(time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	if err := s.Send(map[string]string{"event": "finding.new"}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != `{"event":"finding.new"}` {
			t.Fatalf("body %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery never arrived")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] || ids[0] == "" {
		t.Fatalf("delivery ids %v", ids)
	}
}

func TestVerifyRefusesForgedTamperedAndReplayedDeliveries(t *testing.T) {
	body := []byte(`{"event":"finding.new"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := http.Header{}
	good.Set(webhooksig.HeaderID, "d-1")
	good.Set(webhooksig.HeaderTimestamp, ts)
	good.Set(webhooksig.HeaderSignature, webhooksig.Sign([]byte(secret), ts, body))
	if err := webhooksig.Verify([]byte(secret), good, body, now, webhooksig.DefaultTolerance); err != nil {
		t.Fatal(err)
	}
	if err := webhooksig.Verify([]byte("another-secret-of-16"), good, body, now, webhooksig.DefaultTolerance); err != webhooksig.ErrBadSignature {
		t.Errorf("wrong secret: %v", err)
	}
	if err := webhooksig.Verify([]byte(secret), good, []byte(`{"event":"finding.old"}`), now, webhooksig.DefaultTolerance); err != webhooksig.ErrBadSignature {
		t.Errorf("tampered body: %v", err)
	}
	if err := webhooksig.Verify([]byte(secret), good, body, now.Add(time.Hour), webhooksig.DefaultTolerance); err != webhooksig.ErrStale {
		t.Errorf("replayed an hour later: %v", err)
	}
	moved := good.Clone()
	moved.Set(webhooksig.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
	if err := webhooksig.Verify([]byte(secret), moved, body, now, webhooksig.DefaultTolerance); err != webhooksig.ErrBadSignature {
		t.Errorf("re-timestamped: %v", err)
	}
	for _, h := range []string{webhooksig.HeaderID, webhooksig.HeaderTimestamp, webhooksig.HeaderSignature} {
		missing := good.Clone()
		missing.Del(h)
		if err := webhooksig.Verify([]byte(secret), missing, body, now, webhooksig.DefaultTolerance); err == nil {
			t.Errorf("without %s: verified", h)
		}
	}
}

func TestAShortSecretIsRefusedAndAFullQueueDropsAndCounts(t *testing.T) {
	if _, err := webhook.New("http://127.0.0.1:1/x", "short", nil, nil); err == nil {
		t.Fatal("a 5-byte secret accepted")
	}
	reg := prometheus.NewRegistry()
	s, err := webhook.New("http://127.0.0.1:1/x", secret, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range webhook.MaxQueue {
		if err := s.Send(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Send(1); err == nil {
		t.Fatal("a full queue accepted another delivery")
	}
	n, err := testutil.GatherAndCount(reg, "vigil_webhook_deliveries_total")
	if err != nil || n != 1 {
		t.Fatalf("dropped deliveries not counted: %d %v", n, err)
	}
}
