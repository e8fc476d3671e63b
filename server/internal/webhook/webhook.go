// Package webhook delivers JSON events to an HTTP endpoint, signed as
// api/webhooksig describes (HMAC-SHA256 over timestamp and body, with a
// delivery id), so the receiver can tell them from forgeries and replays.
//
// Concurrency and failure: Send queues (bounded, MaxQueue) and returns at
// once; one worker delivers in order and retries a failed delivery with
// exponential backoff (RetryBase, doubling, MaxAttempts in all). A
// delivery still failing is logged and counted, then dropped: alerts are
// also in the logs and metrics, and the findings they announce are in the
// database.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api/webhooksig"
)

// Limits and defaults, with their units.
const (
	// MaxQueue bounds deliveries waiting to be sent.
	MaxQueue = 1000
	// MaxAttempts is how often one delivery is tried.
	MaxAttempts = 5
	// RetryBase is the first wait before a retry; each retry doubles it.
	RetryBase = time.Second
	// AttemptTimeout bounds one HTTP attempt.
	AttemptTimeout = 10 * time.Second
	// MinSecretLength: a shorter HMAC secret is refused.
	MinSecretLength = 16
)

// Sender delivers events to one URL.
type Sender struct {
	url       string
	secret    []byte
	client    *http.Client
	log       *zap.Logger
	queue     chan delivery
	retryBase time.Duration
	results   *prometheus.CounterVec
}

type delivery struct {
	id   string
	body []byte
}

// New returns a sender for url with secret; reg (may be nil) gets the
// delivery counter vigil_webhook_deliveries_total{result}.
func New(url, secret string, reg prometheus.Registerer, log *zap.Logger) (*Sender, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("the webhook secret is shorter than %d bytes", MinSecretLength)
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sender{url: url, secret: []byte(secret), client: &http.Client{Timeout: AttemptTimeout}, log: log,
		queue: make(chan delivery, MaxQueue), retryBase: RetryBase,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_webhook_deliveries_total",
			Help: "Webhook deliveries by result: delivered, failed (after every retry), dropped (queue full)."}, []string{"result"})}
	if reg != nil {
		reg.MustRegister(s.results)
	}
	return s, nil
}

// SetRetryBase changes the first retry wait (tests).
func (s *Sender) SetRetryBase(d time.Duration) { s.retryBase = d }

// Send queues event (marshalled to JSON) for delivery; it never blocks.
func (s *Sender) Send(event any) error {
	body, err := json.Marshal(event)
	if err != nil {
		return err
	}
	select {
	case s.queue <- delivery{id: uuid.NewString(), body: body}:
		return nil
	default:
		s.results.WithLabelValues("dropped").Inc()
		return errors.New("the webhook queue is full")
	}
}

// Run delivers queued events until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.queue:
			s.deliver(ctx, d)
		}
	}
}

func (s *Sender) deliver(ctx context.Context, d delivery) {
	wait := s.retryBase
	var err error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		if err = s.post(ctx, d); err == nil {
			s.results.WithLabelValues("delivered").Inc()
			return
		}
		s.log.Warn("webhook delivery failed", zap.String("id", d.id), zap.Int("attempt", attempt), zap.Error(err))
		if attempt == MaxAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
	s.results.WithLabelValues("failed").Inc()
	s.log.Error("webhook delivery gave up", zap.String("id", d.id), zap.Int("attempts", MaxAttempts), zap.Error(err))
}

func (s *Sender) post(ctx context.Context, d delivery) error {
	return Post(ctx, s.client, s.url, s.secret, d.id, d.body, time.Now())
}

// maxReplyBytes bounds how much of a receiver's answer is read.
const maxReplyBytes = 64 << 10

// Post sends one signed delivery (api/webhooksig: HMAC over the timestamp
// and the body, with the delivery id) and reports anything but a 2xx
// answer as an error. The alert sender and customer notices both use it.
func Post(ctx context.Context, client *http.Client, url string, secret []byte, id string, body []byte, now time.Time) error {
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhooksig.HeaderID, id)
	req.Header.Set(webhooksig.HeaderTimestamp, ts)
	req.Header.Set(webhooksig.HeaderSignature, webhooksig.Sign(secret, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxReplyBytes))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the webhook answered HTTP %d", resp.StatusCode)
	}
	return nil
}
