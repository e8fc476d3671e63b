// Package httpapi is vigil-server's HTTP layer: routing (gin), request ids,
// access logs, Prometheus metrics, probes, and the single mapping from error
// kinds to status codes (errors.go). Handlers stay thin: they decode, call
// domain code that knows nothing of HTTP, and encode. No gin type crosses
// below this package.
//
// Every failed request gets {code, message, request_id}; the detail goes to
// the log under the same request id.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// Limits, with their units.
const (
	// ReadinessCheckTimeout bounds each dependency check of /readyz.
	ReadinessCheckTimeout = 3 * time.Second
	// MaxRequestIDLength is the longest client-supplied X-Request-ID kept.
	MaxRequestIDLength = 64
	// HeaderRequestID carries the request id both ways.
	HeaderRequestID = "X-Request-ID"
)

// Check is one readiness dependency (database, blob store).
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Deps is what the router needs.
type Deps struct {
	Log     *zap.Logger
	Version string
	Ready   []Check
	// Registry receives the HTTP metrics and is served on /metrics. A nil
	// Registry gets a new one with Go and process collectors.
	Registry *prometheus.Registry
	// BodyReadTimeout bounds reading a request body (an upload: between
	// reads); 0 means DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// TrustedProxies lists the proxies (IPs or CIDRs) whose
	// X-Forwarded-For is believed; empty: none, the peer address is the
	// client's.
	TrustedProxies []string
}

const (
	ginKeyRequestID = "vigil.request_id"
	ginKeyLogger    = "vigil.logger"
)

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,` + strconv.Itoa(MaxRequestIDLength) + `}$`)

// RequestID returns the request's id.
func RequestID(c *gin.Context) string { return c.GetString(ginKeyRequestID) }

func loggerOf(c *gin.Context) *zap.Logger {
	if l, ok := c.Get(ginKeyLogger); ok {
		return l.(*requestLogger).get()
	}
	return nil
}

// requestLogger makes the request's logger (the base logger with the
// request id) on first use: most requests never log but the access line,
// and a zap child logger costs an encoder clone.
type requestLogger struct {
	base *zap.Logger
	rid  string
	once sync.Once
	l    *zap.Logger
}

func (r *requestLogger) get() *zap.Logger {
	r.once.Do(func() { r.l = r.base.With(zap.String("request_id", r.rid)) })
	return r.l
}

// Request ids are a per-process random prefix and a counter: unique, and
// without a call into the kernel's random source on every request (they
// name a request in logs; nothing relies on guessing them being hard).
var (
	requestIDPrefix = func() string {
		b := make([]byte, 6)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
	requestCounter atomic.Uint64
)

func newRequestID() string {
	return requestIDPrefix + fmt.Sprintf("%012x", requestCounter.Add(1))
}

// New builds the router with middleware, probes and metrics (public
// routes); Register adds the route table (Routes).
func New(d Deps) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
		d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := newMetrics(d.Registry, d.Version)

	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	// Finding 9: X-Forwarded-For only from configured proxies.
	if err := r.SetTrustedProxies(d.TrustedProxies); err != nil {
		d.Log.Error("trusted_proxies is invalid; trusting no proxy", zap.Error(err))
		r.SetTrustedProxies(nil)
	}
	r.Use(requestContext(d.Log, d.BodyReadTimeout), recovery(), m.middleware(), accessLog())

	r.GET(PathHealth, func(c *gin.Context) {
		c.JSON(http.StatusOK, Health{Status: "ok", Version: d.Version})
	})
	r.GET(PathReady, readiness(d.Ready))
	r.GET(PathMetrics, gin.WrapH(promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry})))

	r.NoRoute(func(c *gin.Context) {
		WriteError(c, apperr.New(apperr.NotFound, "no such path: %s", c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		WriteError(c, apperr.New(apperr.MethodNotAllowed, "method %s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})
	return r
}

// requestContext assigns the request id (keeping a well-formed one the
// client sent), echoes it, and gives the request a logger that carries it.
func requestContext(log *zap.Logger, bodyTimeout time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(ginKeyBodyTimeout, bodyTimeout)
		rid := c.GetHeader(HeaderRequestID)
		if !validRequestID.MatchString(rid) {
			rid = newRequestID()
		}
		c.Set(ginKeyRequestID, rid)
		c.Set(ginKeyLogger, &requestLogger{base: log, rid: rid})
		c.Header(HeaderRequestID, rid)
		c.Next()
	}
}

// recovery turns a panic into a logged 500 with the standard body.
func recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if log := loggerOf(c); log != nil {
					log.Error("handler panicked", zap.Any("panic", p), zap.Stack("stack"))
				}
				WriteError(c, fmt.Errorf("panic: %v", p))
			}
		}()
		c.Next()
	}
}

func accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		if rl, ok := c.Get(ginKeyLogger); ok {
			level := zap.InfoLevel
			if c.FullPath() == api.RouteDeviceCheckIn && c.Writer.Status() < 400 {
				// The hot path: thousands a second; successful ones only at debug.
				level = zap.DebugLevel
			}
			if !rl.(*requestLogger).base.Core().Enabled(level) {
				return
			}
			if ce := rl.(*requestLogger).get().Check(level, "request"); ce != nil {
				ce.Write(
					zap.String("method", c.Request.Method),
					zap.String("path", c.Request.URL.Path),
					zap.String("route", routeOf(c)),
					zap.Int("status", c.Writer.Status()),
					zap.Int("bytes", c.Writer.Size()),
					zap.Duration("duration", time.Since(start)),
					zap.String("remote", c.ClientIP()))
			}
		}
	}
}

// routeOf is the route pattern, never the raw path, so metrics keep a
// bounded set of labels.
func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry, version string) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_http_requests_total",
			Help: "HTTP requests served, by method, route pattern and status code.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_http_request_duration_seconds",
			Help:    "HTTP request latency in seconds, by method, route pattern and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route", "status"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_build_info", Help: "Always 1; the version label names the running build."}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.requests, m.latency, build)
	return m
}

// knownMethods are the methods that get their own metric label; any other
// (a client may send any token) shares "other", so labels stay bounded.
var knownMethods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodPatch: true, http.MethodOptions: true}

// methodLabel bounds the method label (finding 4).
func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}

func (m *metrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		labels := prometheus.Labels{"method": methodLabel(c.Request.Method), "route": routeOf(c), "status": strconv.Itoa(c.Writer.Status())}
		m.requests.With(labels).Inc()
		m.latency.With(labels).Observe(time.Since(start).Seconds())
	}
}

// Probe and metrics paths (public).
const (
	PathHealth  = "/healthz"
	PathReady   = "/readyz"
	PathMetrics = "/metrics"
)

// Health answers /healthz.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// Readiness answers /readyz: the state of each dependency; when one is
// down it is a 503 with the standard error fields.
type Readiness struct {
	Code      string            `json:"code,omitempty"`
	Message   string            `json:"message,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Status    string            `json:"status,omitempty"`
	Checks    map[string]string `json:"checks"`
}

type checkResult struct {
	name string
	err  error
}

func readiness(checks []Check) gin.HandlerFunc {
	return func(c *gin.Context) {
		results := make(chan checkResult, len(checks))
		for _, ch := range checks {
			go func() {
				ctx, cancel := context.WithTimeout(c.Request.Context(), ReadinessCheckTimeout)
				defer cancel()
				results <- checkResult{ch.Name, ch.Check(ctx)}
			}()
		}
		status := map[string]string{}
		var failed []string
		for range checks {
			r := <-results
			if r.err != nil {
				status[r.name] = "unavailable"
				failed = append(failed, r.name)
				if log := loggerOf(c); log != nil {
					log.Warn("readiness check failed", zap.String("check", r.name), zap.Error(r.err))
				}
				continue
			}
			status[r.name] = "ok"
		}
		if len(failed) > 0 {
			sort.Strings(failed)
			c.AbortWithStatusJSON(statusOf(apperr.Unavailable), Readiness{
				Code: apperr.Unavailable.String(), Message: fmt.Sprintf("not ready: %v unavailable", failed), RequestID: RequestID(c), Checks: status,
			})
			return
		}
		c.JSON(http.StatusOK, Readiness{Status: "ready", Checks: status})
	}
}
