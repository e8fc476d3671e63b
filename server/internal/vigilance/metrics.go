package vigilance

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-ota/vigil/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/state"
)

// Metric collection limits, with their units.
const (
	// metricsTimeout bounds the database read of one scrape.
	metricsTimeout = 5 * time.Second
	// metricsCacheTTL: scrapes closer together than this share one read.
	metricsCacheTTL = 10 * time.Second
)

// Metrics are vigilance's Prometheus metrics: the alert counter, and the
// open and overdue findings read from the database at scrape time (so
// every replica reports the same numbers).
type Metrics struct {
	alerts  prometheus.Counter
	open    *prometheus.Desc
	overdue *prometheus.Desc
	st      state.FindingStore
	now     func() time.Time

	mu     sync.Mutex
	cached []prometheus.Metric
	until  time.Time
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer, st state.FindingStore, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		alerts: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_finding_alerts_total",
			Help: "New findings on releases that devices run (each also sent to the alert webhook, when configured)."}),
		open: prometheus.NewDesc("vigil_findings_open", "Open findings by triage risk (untriaged, controlled, uncontrolled) and KEV listing.",
			[]string{"risk", "kev"}, nil),
		overdue: prometheus.NewDesc("vigil_findings_overdue", "Open uncontrolled findings with a clock (customer notice, fix deployed) past due.", nil, nil),
		st:      st, now: now,
	}
	reg.MustRegister(m.alerts, m)
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.open
	ch <- m.overdue
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cached == nil || m.now().After(m.until) {
		ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
		defer cancel()
		ms, err := m.read(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(m.open, err)
			return
		}
		m.cached, m.until = ms, m.now().Add(metricsCacheTTL)
	}
	for _, x := range m.cached {
		ch <- x
	}
}

func (m *Metrics) read(ctx context.Context) ([]prometheus.Metric, error) {
	recs, err := m.st.Findings(ctx, state.FindingFilter{Status: vigilance.StatusOpen, NoData: true})
	if err != nil {
		return nil, err
	}
	type key struct {
		risk string
		kev  bool
	}
	counts := map[key]int{}
	for _, risk := range []string{vigilance.RiskUntriaged, vigilance.RiskControlled, vigilance.RiskUncontrolled} {
		counts[key{risk, false}], counts[key{risk, true}] = 0, 0
	}
	overdue := 0
	now := m.now()
	for _, r := range recs {
		counts[key{r.Risk, r.KEV}]++
		if r.Risk == vigilance.RiskUncontrolled && len(clocksOf(r, now).Overdue) > 0 {
			overdue++
		}
	}
	var out []prometheus.Metric
	for k, n := range counts {
		out = append(out, prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(n), k.risk, strconv.FormatBool(k.kev)))
	}
	return append(out, prometheus.MustNewConstMetric(m.overdue, prometheus.GaugeValue, float64(overdue))), nil
}
