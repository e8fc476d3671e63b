package tufrepo

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsTimeout bounds the database read of one scrape.
const metricsTimeout = 5 * time.Second

var expiryDesc = prometheus.NewDesc("vigil_repo_metadata_expires_timestamp_seconds",
	"When each published role's signed metadata expires (Unix seconds): devices refuse expired metadata, so alert well before (docs/operations.md).",
	[]string{"role"}, nil)

// Collector exports the expiry of every published role at each scrape.
func (r *Repo) Collector() prometheus.Collector { return expiryCollector{r} }

type expiryCollector struct{ r *Repo }

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	vs, err := c.r.st.RoleVersions(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(expiryDesc, err)
		return
	}
	for _, v := range vs {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(v.Expires.Unix()), v.Role)
	}
}
