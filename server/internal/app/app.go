// Package app wires vigil-server together: it turns a validated
// configuration into open stores, an HTTP router and a listening server, and
// runs it until its context ends. Every start-up failure names the setting
// that caused it, so a bad configuration fails fast and clearly.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/vigil-ota/vigil/internal/buildinfo"
	"github.com/vigil-ota/vigil/internal/keyfile"
	"github.com/vigil-ota/vigil/internal/release"
	"github.com/vigil-ota/vigil/server/internal/blob"
	"github.com/vigil-ota/vigil/server/internal/blob/localblob"
	"github.com/vigil-ota/vigil/server/internal/blob/s3blob"
	"github.com/vigil-ota/vigil/server/internal/config"
	"github.com/vigil-ota/vigil/server/internal/console"
	"github.com/vigil-ota/vigil/server/internal/cvd"
	"github.com/vigil-ota/vigil/server/internal/fleet"
	"github.com/vigil-ota/vigil/server/internal/httpapi"
	"github.com/vigil-ota/vigil/server/internal/incident"
	"github.com/vigil-ota/vigil/server/internal/notice"
	"github.com/vigil-ota/vigil/server/internal/operator"
	"github.com/vigil-ota/vigil/server/internal/served"
	"github.com/vigil-ota/vigil/server/internal/state"
	"github.com/vigil-ota/vigil/server/internal/state/sqlstore"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/webhook"
)

// HTTP server limits, with their units.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
	// RolloutControllerInterval is how often each replica applies the
	// rollout rules (soak times end without any event).
	RolloutControllerInterval = 10 * time.Second
	// readinessProbeKey is the key /readyz stats: present or not, an answer
	// proves the blob store is reachable.
	readinessProbeKey = "readyz-probe"
)

// Server is a configured, listening vigil-server.
type Server struct {
	cfg   config.Config
	log   *zap.Logger
	State state.Store
	Blobs blob.Store
	Repo  *tufrepo.Repo
	Fleet *fleet.Fleet
	// Served counts target bytes served, by release and kind.
	Served *served.Counter
	// Vigilance is post-market vigilance; Alerts its webhook (nil: none).
	Vigilance *vigilance.Service
	Alerts    *webhook.Sender
	feeds     []vigilance.FeedConfig
	ops       *operator.Service
	// Incident response.
	CVD       *cvd.Service
	Incidents *incident.Service
	Notices   *notice.Service
	reports   reports
	security  *cvd.SecurityTxt

	services httpapi.Services
	routes   []httpapi.Route
	holder   string // this replica's name in leases
	http     *http.Server
	ln       net.Listener
}

// Open prepares everything that can fail at start: the data directory, the
// database, the blob store, TLS material and the listening socket.
func Open(ctx context.Context, cfg config.Config, log *zap.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok {
			s.closeStores()
		}
	}()
	if err := prepareDataDir(cfg); err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()

	st, err := sqlstore.Open(octx, cfg.DatabaseURL)
	if err != nil {
		return nil, cfg.Errorf("database_url", "%v", err)
	}
	s.State = st
	s.Blobs, err = OpenBlobStore(octx, cfg)
	if err != nil {
		return nil, cfg.Errorf("blob_url", "%v", err)
	}

	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, cfg.Errorf("tls_cert", "cannot load the certificate and key: %v", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}

	var snap, ts, nextSnap, nextTS *tufrepo.OnlineKey
	if cfg.SnapshotKey == "" && s.State.Backend() == sqlstore.BackendSQLite {
		// The embedded default is one server: it may keep its own online
		// keys. Many replicas must share theirs (a KMS), so they are not
		// generated on PostgreSQL.
		var err error
		if cfg.SnapshotKey, cfg.TimestampKey, err = ensureOnlineKeys(filepath.Join(cfg.DataDir, OnlineKeyDirName), log); err != nil {
			return nil, cfg.Errorf("data_dir", "%v", err)
		}
	}
	if cfg.SnapshotKey != "" {
		if snap, err = tufrepo.LoadOnlineKey(octx, cfg.SnapshotKey); err != nil {
			return nil, cfg.Errorf("snapshot_key", "%v", err)
		}
		if ts, err = tufrepo.LoadOnlineKey(octx, cfg.TimestampKey); err != nil {
			return nil, cfg.Errorf("timestamp_key", "%v", err)
		}
		if cfg.SnapshotKeyNext != "" {
			if nextSnap, err = tufrepo.LoadOnlineKey(octx, cfg.SnapshotKeyNext); err != nil {
				return nil, cfg.Errorf("snapshot_key_next", "%v", err)
			}
			if nextTS, err = tufrepo.LoadOnlineKey(octx, cfg.TimestampKeyNext); err != nil {
				return nil, cfg.Errorf("timestamp_key_next", "%v", err)
			}
			log.Info("online-key rotation pending: the server signs with the keys the root names (current or next)",
				zap.String("snapshot_next", nextSnap.ID), zap.String("timestamp_next", nextTS.ID))
		}
		log.Info("online keys", zap.String("snapshot_keyid", snap.ID), zap.String("timestamp_keyid", ts.ID),
			zap.String("check", "vigil repo init --expect-online-keyid "+snap.ID+" --expect-online-keyid "+ts.ID))
		for _, k := range []*tufrepo.OnlineKey{snap, ts, nextSnap, nextTS} {
			if k == nil {
				continue
			}
			if strings.Contains(k.Ref, "keys-example") {
				log.Warn("DEMO KEYS: the online key comes from keys-example/, whose private keys are public; never use it in production", zap.String("key", k.Ref), zap.String("keyid", k.ID))
			}
		}
	} else {
		log.Warn("no online keys (snapshot_key, timestamp_key): the repository is served read-only and refuses publishes; replicas on PostgreSQL share keys from a KMS or key files")
	}
	ops := operator.New(s.State, cfg.BootstrapToken)
	s.ops = ops
	switch admin, err := ops.AdminTokenExists(octx); {
	case err != nil:
		return nil, cfg.Errorf("database_url", "cannot read operator tokens: %v", err)
	case cfg.BootstrapToken != "" && admin != "":
		log.Info("the bootstrap token is retired: an admin token exists, so bootstrap_token is refused; remove it from the configuration", zap.String("admin_token", admin))
	case cfg.BootstrapToken != "":
		log.Warn("the bootstrap token acts as admin until the first admin token exists: create one (vigil token create --role admin) to retire it")
	case admin == "":
		log.Warn("no bootstrap_token and no admin token: the management API refuses every request")
	}
	s.Repo = tufrepo.New(s.State, s.Blobs, tufrepo.Options{
		Snapshot: snap, Timestamp: ts, NextSnapshot: nextSnap, NextTimestamp: nextTS,
		TimestampExpiry: cfg.TimestampExpiry, SnapshotExpiry: cfg.SnapshotExpiry,
		Log: log.Named("repo"), Audit: s.State,
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Repo.Collector())
	s.Served = served.New(s.Repo, s.State, reg, log.Named("served"))
	if err := s.openVigilance(cfg, reg, log); err != nil {
		return nil, err
	}
	router := httpapi.New(httpapi.Deps{
		Registry:        reg,
		Log:             log,
		Version:         buildinfo.Version,
		BodyReadTimeout: cfg.BodyReadTimeout,
		TrustedProxies:  cfg.TrustedProxyList(),
		Ready: []httpapi.Check{
			{Name: "database", Check: s.State.Ping},
			{Name: "blobs", Check: func(ctx context.Context) error {
				_, err := s.Blobs.Stat(ctx, readinessProbeKey)
				if errors.Is(err, blob.ErrNotFound) {
					return nil
				}
				return err
			}},
		},
	})
	stores := s.State
	if err := s.openResponse(cfg, log); err != nil {
		return nil, err
	}
	con, err := console.New(console.Deps{Rollouts: s.Fleet.Rollouts, Registry: s.Fleet.Registry, Vigilance: s.Vigilance, Catalog: s.Repo,
		Audit: stores, Sessions: ops, Secure: tlsCfg != nil})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	s.services = httpapi.Services{Repo: s.Repo, Served: s.Served, Registry: s.Fleet.Registry, DeviceAuth: s.Fleet.Auth, CheckIns: s.Fleet.CheckIns,
		Events: s.Fleet.Events, Rollouts: s.Fleet.Rollouts, Operators: ops, Tokens: ops, Audit: stores, Vigilance: s.Vigilance,
		Sessions: ops, Refuse: con.Refuse,
		CVD: s.CVD, SecurityTxt: s.securityTxt, Incidents: s.Incidents, Notices: s.Notices, Reports: s.reports}
	s.routes = append(httpapi.Routes(s.services), con.Routes()...)
	httpapi.Register(router, s.routes, s.services)
	s.http = &http.Server{
		Handler:           router,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, cfg.Errorf("listen", "cannot listen: %v", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.ln = ln
	ok = true
	return s, nil
}

// openVigilance builds the fleet and vigilance (which reads the
// repository, the fleet's rollouts and the registry) and hooks vigilance
// into publishing: the SBOM gate, and indexing after each publish.
func (s *Server) openVigilance(cfg config.Config, reg *prometheus.Registry, log *zap.Logger) error {
	stores := s.State
	s.Fleet = fleet.New(fleet.Stores{Registry: stores, Nonces: stores, Secrets: stores, Served: stores, Rollouts: stores, Progress: stores, Events: stores, Audit: stores}, s.Repo, log.Named("fleet"))
	feeds, err := cfg.FeedConfigs()
	if err != nil {
		return err
	}
	s.feeds = feeds
	tmp := filepath.Join(cfg.DataDir, FeedTempDirName)
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return cfg.Errorf("data_dir", "cannot create %q: %v", tmp, err)
	}
	o := vigilance.Options{Log: log.Named("vigilance"), Rollouts: s.Fleet.Rollouts, Metrics: vigilance.NewMetrics(reg, stores, nil), TempDir: tmp, Feeds: feeds,
		Flush: s.Fleet.CheckIns.FlushLastSeen}
	if cfg.AlertWebhookURL != "" {
		if s.Alerts, err = webhook.New(cfg.AlertWebhookURL, cfg.AlertWebhookSecret, reg, log.Named("webhook")); err != nil {
			return cfg.Errorf("alert_webhook_secret", "%v", err)
		}
		o.Alerts = alertSender{s.Alerts}
	}
	s.Vigilance = vigilance.New(vigilance.Stores{Vulns: stores, SBOMs: stores, Findings: stores, Registry: stores, Audit: stores}, s.Repo, o)
	s.Repo.SetRevoked(func(ctx context.Context, removed []release.Published, reason string) {
		for _, p := range removed {
			if _, err := s.Fleet.Rollouts.HaltRevoked(ctx, p.Product, p.Custom.Version, reason); err != nil {
				log.Error("halting the rollouts of a revoked release failed", zap.String("release", p.Release()), zap.Error(err))
			}
		}
	})
	s.Repo.SetVigilance(s.Vigilance, func(ctx context.Context, products []string) {
		if _, err := s.Vigilance.SyncSBOMs(ctx); err != nil {
			log.Warn("indexing the published SBOMs failed; the vigilance job retries", zap.Strings("products", products), zap.Error(err))
		}
	})
	return nil
}

// OnlineKeyDirName is where the embedded default keeps the online keys it
// generated, inside the data directory.
const OnlineKeyDirName = "keys"

// ensureOnlineKeys returns the key files of the embedded default's online
// keys, generating them (mode 0600, in a 0700 directory) on first start.
func ensureOnlineKeys(dir string, log *zap.Logger) (snapshot, timestamp string, err error) {
	for _, name := range []string{"snapshot", "timestamp"} {
		priv, _ := keyfile.Paths(dir, name)
		if _, err := os.Stat(priv); err == nil {
			continue
		}
		k, err := keyfile.GenerateEd25519()
		if err != nil {
			return "", "", err
		}
		if _, _, err := keyfile.Write(dir, name, k, false); err != nil {
			return "", "", fmt.Errorf("cannot write the generated online key: %w", err)
		}
		log.Info("online key generated: it signs this server's snapshot or timestamp; back the data directory up with it", zap.String("key", priv))
	}
	s, _ := keyfile.Paths(dir, "snapshot")
	t, _ := keyfile.Paths(dir, "timestamp")
	return s, t, nil
}

// FeedTempDirName is where feeds wait inside the data directory until
// they are imported.
const FeedTempDirName = "feeds.tmp"

// alertSender adapts the webhook to vigilance's alerts.
type alertSender struct{ w *webhook.Sender }

func (a alertSender) Alert(_ context.Context, al vigilance.Alert) { a.w.Send(al) }

// prepareDataDir creates the data directory and proves it writable. It is
// checked even with PostgreSQL and S3: it is the server's own directory
// (the embedded default keeps its database and blobs there).
func prepareDataDir(cfg config.Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return cfg.Errorf("data_dir", "cannot create %q: %v", cfg.DataDir, err)
	}
	f, err := os.CreateTemp(cfg.DataDir, ".write-probe-*")
	if err != nil {
		return cfg.Errorf("data_dir", "%q is not writable: %v", cfg.DataDir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// OpenBlobStore opens the store a blob_url names: s3://… for S3, a
// directory path (optionally file://…) for the local backend.
func OpenBlobStore(ctx context.Context, cfg config.Config) (blob.Store, error) {
	if strings.HasPrefix(cfg.BlobURL, "s3://") {
		sc, err := s3blob.ParseURL(cfg.BlobURL)
		if err != nil {
			return nil, err
		}
		sc.AccessKey, sc.SecretKey = cfg.S3AccessKey, cfg.S3SecretKey
		return s3blob.Open(ctx, sc)
	}
	dir := strings.TrimPrefix(cfg.BlobURL, "file://")
	if strings.Contains(dir, "://") {
		return nil, fmt.Errorf("%q: unknown scheme (use s3://BUCKET?endpoint=HOST:PORT or a directory)", cfg.BlobURL)
	}
	return localblob.Open(filepath.Clean(dir))
}

// Handler is the server's HTTP handler (in-process tests).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Operators is the token service (in-process tests).
func (s *Server) Operators() *operator.Service { return s.ops }

// Routes is the server's route table (the authorization-matrix test, the
// OpenAPI document).
func (s *Server) Routes() []httpapi.Route { return s.routes }

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends, then drains in-flight requests for up to the
// configured shutdown timeout and closes the stores.
func (s *Server) Run(ctx context.Context) error {
	defer s.log.Info("vigil-server stopped") // last: after the jobs, the requests and the stores
	defer s.closeStores()
	scheme := "http"
	if s.http.TLSConfig != nil {
		scheme = "https"
	}
	s.log.Info("vigil-server listening",
		zap.String("url", scheme+"://"+s.Addr()),
		zap.String("version", buildinfo.Version),
		zap.String("database", s.State.Backend()),
		zap.String("blobs", blobBackend(s.cfg.BlobURL)),
		zap.String("data_dir", s.cfg.DataDir))
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.ln) }()
	jctx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	s.startJobs(jctx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("vigil-server shutting down", zap.Duration("grace", s.cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func blobBackend(u string) string {
	if strings.HasPrefix(u, "s3://") {
		return "s3"
	}
	return "local"
}

func (s *Server) closeStores() {
	if s.State != nil {
		s.State.Close()
	}
}
