// Package served counts the bytes of release files the server serves, by
// release and kind (full image, delta, SBOM): the Prometheus counters
// vigil_target_bytes_served_total{kind} and vigil_target_downloads_total{kind},
// and per-release totals in the database, which rollout status reads
// ("bytes served full vs delta").
//
// Concurrency: Add is safe from any request goroutine and never touches
// the database; counts are written by Flush (Run calls it every
// FlushInterval, and once more when its context ends). A replica that dies
// loses at most FlushInterval of counting, never anything else, and a
// failed write keeps its counts for the next one. Only files the
// repository's signed metadata lists are counted by release; anything
// else counts as kind "other" in the metrics only.
package served

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/server/internal/state"
)

// FlushInterval is how often counts go to the database.
const FlushInterval = 5 * time.Second

// KindOther labels served files that are not a signed target.
const KindOther = "other"

// Classifier names the release and kind of a served targets-area path
// (tufrepo.Repo).
type Classifier interface {
	ClassifyTarget(ctx context.Context, path string) (product, version, kind string, ok bool)
}

// Counter counts served bytes.
type Counter struct {
	cls       Classifier
	store     state.ServedStore
	log       *zap.Logger
	bytes     *prometheus.CounterVec
	downloads *prometheus.CounterVec

	mu      sync.Mutex
	pending map[[3]string]state.Served
}

// New returns a counter registered with reg (nil: not exported).
func New(cls Classifier, store state.ServedStore, reg prometheus.Registerer, log *zap.Logger) *Counter {
	if log == nil {
		log = zap.NewNop()
	}
	c := &Counter{cls: cls, store: store, log: log, pending: map[[3]string]state.Served{},
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_target_bytes_served_total",
			Help: "Bytes of repository targets served, by kind (full, delta, sbom, other)."}, []string{"kind"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_target_downloads_total",
			Help: "Requests for repository targets answered with bytes (whole or ranged), by kind."}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(c.bytes, c.downloads)
	}
	return c
}

// Add counts n bytes of the targets-area file path served.
func (c *Counter) Add(ctx context.Context, path string, n int64) {
	if c == nil || n <= 0 {
		return
	}
	product, version, kind, ok := c.cls.ClassifyTarget(ctx, path)
	if !ok {
		kind = KindOther
	}
	c.bytes.WithLabelValues(kind).Add(float64(n))
	c.downloads.WithLabelValues(kind).Inc()
	if !ok {
		return
	}
	c.mu.Lock()
	c.addPending(state.Served{Product: product, Version: version, Kind: kind, Bytes: n, Requests: 1})
	c.mu.Unlock()
}

// addPending adds s to its totals; c.mu is held.
func (c *Counter) addPending(s state.Served) {
	k := [3]string{s.Product, s.Version, s.Kind}
	p := c.pending[k]
	p.Product, p.Version, p.Kind = s.Product, s.Version, s.Kind
	p.Bytes += s.Bytes
	p.Requests += s.Requests
	c.pending[k] = p
}

// Flush writes the counts so far; on failure they are kept for the next.
func (c *Counter) Flush(ctx context.Context) error {
	c.mu.Lock()
	batch := make([]state.Served, 0, len(c.pending))
	for _, s := range c.pending {
		batch = append(batch, s)
	}
	c.pending = map[[3]string]state.Served{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := c.store.AddServed(ctx, batch)
	if err != nil {
		c.mu.Lock()
		for _, s := range batch {
			c.addPending(s)
		}
		c.mu.Unlock()
	}
	return err
}

// Run flushes every FlushInterval until ctx ends, then once more.
func (c *Counter) Run(ctx context.Context) {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), FlushInterval)
			if err := c.Flush(fctx); err != nil {
				c.log.Warn("served bytes not written at shutdown", zap.Error(err))
			}
			cancel()
			return
		case <-t.C:
			if err := c.Flush(ctx); err != nil {
				c.log.Warn("served bytes not written (kept for the next flush)", zap.Error(err))
			}
		}
	}
}
