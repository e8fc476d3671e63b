// Package config loads vigil-server's configuration through the shared
// settings mechanism (internal/settings): each setting is declared once,
// in declare, and has one name used as the YAML key (listen), the
// environment variable (VIGIL_LISTEN) and the flag (--listen). Sources apply
// in order, later ones winning: built-in defaults, the YAML file (--config
// or VIGIL_CONFIG), VIGIL_* environment variables, then flags.
//
// Validation happens once, at start, and every error names the setting, its
// flag and its variable, so an operator knows what to change. Checks that
// need the outside world (is the database reachable, is the data directory
// writable) run in the app package, which also names the setting.
package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-ota/vigil/internal/settings"
	"github.com/vigil-ota/vigil/server/internal/cvd"
	"github.com/vigil-ota/vigil/server/internal/notice"
	"github.com/vigil-ota/vigil/server/internal/tufrepo"
	"github.com/vigil-ota/vigil/server/internal/vigilance"
	"github.com/vigil-ota/vigil/server/internal/webhook"
)

// Defaults, with their units.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./var"
	DefaultLogFormat       = "json"
	DefaultLogLevel        = "info"
	DefaultStartupTimeout  = 15 * time.Second
	DefaultShutdownTimeout = 20 * time.Second
	DefaultTimestampExpiry = 24 * time.Hour
	DefaultSnapshotExpiry  = 7 * 24 * time.Hour
	// DefaultOnlineRefreshInterval is how often each replica checks whether
	// the timestamp or snapshot needs re-signing.
	DefaultOnlineRefreshInterval = time.Minute
	// DefaultBodyReadTimeout bounds reading a request body (an upload:
	// the longest pause between reads).
	DefaultBodyReadTimeout = 60 * time.Second
	// SQLiteFileName and BlobDirName are the embedded default's files
	// inside the data directory.
	SQLiteFileName = "vigil.db"
	BlobDirName    = "blobs"
	// RefreshChecksPerLifetime: the refresher must look at least this often
	// within one timestamp lifetime.
	RefreshChecksPerLifetime = 6
	// EnvPrefix starts every environment variable.
	EnvPrefix = "VIGIL_"
	// EnvConfigFile names the YAML file when --config is not given.
	EnvConfigFile = "VIGIL_CONFIG"
	// DefaultVigilanceInterval is how often the vigilance clocks are
	// evaluated and published SBOMs checked for indexing.
	DefaultVigilanceInterval = time.Minute
	// DefaultNoticeInterval is how often due notice deliveries are sent.
	DefaultNoticeInterval = 10 * time.Second
)

// Config is the server's effective configuration.
type Config struct {
	Listen          string
	DataDir         string
	DatabaseURL     string
	BlobURL         string
	S3AccessKey     string
	S3SecretKey     string
	TLSCert         string
	TLSKey          string
	LogFormat       string
	LogLevel        string
	StartupTimeout  time.Duration
	ShutdownTimeout time.Duration
	BodyReadTimeout time.Duration
	// TrustedProxies: comma-separated IPs or CIDRs whose X-Forwarded-For
	// is believed; empty trusts none.
	TrustedProxies string

	BootstrapToken        string
	SnapshotKey           string
	TimestampKey          string
	TimestampExpiry       time.Duration
	SnapshotExpiry        time.Duration
	OnlineRefreshInterval time.Duration

	// Feeds are scheduled vulnerability feeds, "KIND URL [INTERVAL]".
	Feeds              []string
	VigilanceInterval  time.Duration
	AlertWebhookURL    string
	AlertWebhookSecret string

	// Incident response (docs/cvd.md, docs/incident-response.md).
	SecurityContacts       []string
	SecurityExpires        string
	SecurityPolicy         string
	SecurityAcknowledgment string
	SecurityLanguages      string
	SecurityCanonical      string
	CVDAckWindow           time.Duration
	CVDReportsPerHour      int64
	CVDRequestsPerMinute   int64
	NoticeAckWindow        time.Duration
	NoticeRetryBase        time.Duration
	NoticeInterval         time.Duration
	SMTPRelay              string
	OrphanUploadAge        time.Duration
	SnapshotKeyNext        string
	TimestampKeyNext       string
	SMTPFrom               string

	// Sources records where each setting's value came from: default,
	// file, env or flag.
	Sources map[string]string

	set *settings.Set
}

// declare binds every setting to c, with its default (the one table).
func (c *Config) declare() *settings.Set {
	s := settings.New(EnvPrefix)
	s.String(&c.Listen, "listen", DefaultListen, "HOST:PORT to serve the API, repository and probes on")
	s.String(&c.DataDir, "data_dir", DefaultDataDir, "directory for the embedded default's SQLite file and blobs")
	s.String(&c.DatabaseURL, "database_url", "", "postgres://USER:PASS@HOST/DB selects PostgreSQL; a file path selects SQLite (default DATA_DIR/"+SQLiteFileName+")").SecretInURL()
	s.String(&c.BlobURL, "blob_url", "", "s3://BUCKET?endpoint=HOST:PORT[&region=R&tls=false&path_style=true] or a directory (default DATA_DIR/"+BlobDirName+")").SecretInURL()
	s.String(&c.S3AccessKey, "s3_access_key", "", "S3 access key (with an s3:// blob_url)")
	s.String(&c.S3SecretKey, "s3_secret_key", "", "S3 secret key (with an s3:// blob_url)").Secret()
	s.String(&c.TLSCert, "tls_cert", "", "PEM certificate file; with tls_key, serve HTTPS")
	s.String(&c.TLSKey, "tls_key", "", "PEM private key file for tls_cert")
	s.String(&c.LogFormat, "log_format", DefaultLogFormat, "json (production) or console (development)")
	s.String(&c.LogLevel, "log_level", DefaultLogLevel, "debug, info, warn or error")
	s.Duration(&c.StartupTimeout, "startup_timeout", DefaultStartupTimeout, "how long start-up may wait for the database and object storage")
	s.Duration(&c.ShutdownTimeout, "shutdown_timeout", DefaultShutdownTimeout, "how long in-flight requests get to finish on SIGTERM")
	s.Duration(&c.BodyReadTimeout, "body_read_timeout", DefaultBodyReadTimeout, "how long reading a request body may take (an image upload: the longest pause between reads)")
	s.String(&c.TrustedProxies, "trusted_proxies", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is believed; empty trusts none")
	s.String(&c.BootstrapToken, "bootstrap_token", "", "admin bearer token for creating the first tokens; retired while any admin token exists; empty disables it").Secret()
	s.String(&c.SnapshotKey, "snapshot_key", "", "online snapshot key: a PEM private key file or a KMS URI (awskms://…, fakekms:// in tests)")
	s.String(&c.TimestampKey, "timestamp_key", "", "online timestamp key: a PEM private key file or a KMS URI")
	s.Duration(&c.OrphanUploadAge, "orphan_upload_age", tufrepo.DefaultOrphanAge, "uploaded images never published are removed once this old (a publish that failed or was abandoned)")
	s.String(&c.SnapshotKeyNext, "snapshot_key_next", "", "online-key rotation: the snapshot key to move to (vigil repo rotate online); the server signs with whichever key the root names")
	s.String(&c.TimestampKeyNext, "timestamp_key_next", "", "online-key rotation: the timestamp key to move to")
	s.Duration(&c.TimestampExpiry, "timestamp_expiry", DefaultTimestampExpiry, "lifetime of each signed timestamp; re-signed when a third remains")
	s.Duration(&c.SnapshotExpiry, "snapshot_expiry", DefaultSnapshotExpiry, "lifetime of each signed snapshot; re-signed when a third remains")
	s.Duration(&c.OnlineRefreshInterval, "online_refresh_interval", DefaultOnlineRefreshInterval, "how often to check whether timestamp or snapshot need re-signing")
	s.List(&c.Feeds, "feeds", "scheduled vulnerability feeds, each \"KIND URL [INTERVAL]\" (KIND osv, nvd or kev; default interval "+vigilance.DefaultFeedInterval.String()+"); fetched with conditional GETs")
	s.Duration(&c.VigilanceInterval, "vigilance_interval", DefaultVigilanceInterval, "how often vigilance evaluates the findings' clocks and indexes newly published SBOMs")
	s.String(&c.AlertWebhookURL, "alert_webhook_url", "", "http(s) URL that receives each new finding on a release devices run (JSON, HMAC-signed); empty: none").SecretInURL()
	s.String(&c.AlertWebhookSecret, "alert_webhook_secret", "", "HMAC-SHA256 secret of the alert webhook, at least 16 bytes").Secret()
	s.List(&c.SecurityContacts, "security_contact", "security.txt Contact URIs (mailto:, https:, tel:); empty: no security.txt is served")
	s.String(&c.SecurityExpires, "security_expires", "", "security.txt Expires (RFC 3339, less than a year ahead); the server refuses to start once it has passed")
	s.String(&c.SecurityPolicy, "security_policy", "", "security.txt Policy: https URL of the disclosure policy")
	s.String(&c.SecurityAcknowledgment, "security_acknowledgments", "", "security.txt Acknowledgments: https URL")
	s.String(&c.SecurityLanguages, "security_languages", "en", "security.txt Preferred-Languages")
	s.String(&c.SecurityCanonical, "security_canonical", "", "security.txt Canonical: the https URL it is served at")
	s.Duration(&c.CVDAckWindow, "cvd_ack_window", cvd.DefaultAckWindow, "how long the maker has to acknowledge a disclosure report before it is overdue")
	s.Int(&c.CVDReportsPerHour, "cvd_reports_per_hour", cvd.DefaultReportsPerHour, 1, "disclosure reports one source address may file per hour (all replicas)")
	s.Int(&c.CVDRequestsPerMinute, "cvd_requests_per_minute", cvd.DefaultRequestsPerMinute, 1, "requests one source address may make to the public disclosure routes per minute (each replica)")
	s.Duration(&c.NoticeAckWindow, "notice_ack_window", notice.DefaultAckWindow, "customer notices unacknowledged for longer are listed as overdue")
	s.Duration(&c.NoticeRetryBase, "notice_retry_base", notice.DefaultRetryBase, "first wait before a failed notice delivery is retried (doubling each time)")
	s.Duration(&c.NoticeInterval, "notice_interval", DefaultNoticeInterval, "how often due notice deliveries are sent")
	s.String(&c.SMTPRelay, "smtp_relay", "", "HOST:PORT of the SMTP relay notices are mailed through; empty: no e-mail")
	s.String(&c.SMTPFrom, "smtp_from", "", "sender address of notice e-mails (with smtp_relay)")
	return s
}

// FeedConfigs parses the feeds setting.
func (c *Config) FeedConfigs() ([]vigilance.FeedConfig, error) {
	var out []vigilance.FeedConfig
	for _, f := range c.Feeds {
		fc, err := vigilance.ParseFeedConfig(f)
		if err != nil {
			return nil, c.Errorf("feeds", "%v", err)
		}
		out = append(out, fc)
	}
	return out, nil
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	var c Config
	c.set = c.declare()
	c.Sources = c.set.Sources()
	return c
}

// Settings returns the declarations (generated documentation).
func Settings() *settings.Set {
	var c Config
	return c.declare()
}

// FlagName is the flag for a setting key.
func FlagName(key string) string { return settings.FlagName(key) }

// EnvName is the environment variable for a setting key.
func EnvName(key string) string { return Settings().EnvName(key) }

// Error is a configuration error that names the setting.
type Error = settings.Error

// Errorf makes an *Error for key, for checks made outside this package.
func (c *Config) Errorf(key, format string, args ...any) error {
	src := c.Sources[key]
	if src == "" {
		src = settings.SourceDefault
	}
	return &Error{Key: key, Flag: FlagName(key), Env: EnvName(key), Source: src, Msg: fmt.Sprintf(format, args...)}
}

// RegisterFlags adds --config and one flag per setting to fs.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (also "+EnvConfigFile+")")
	Settings().RegisterFlags(fs)
}

// Load builds the effective configuration from defaults, the YAML file,
// the environment (lookupEnv, usually os.LookupEnv) and the flags in fs that
// were set, then validates it.
func Load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	var c Config
	c.set = c.declare()
	path := ""
	if v, ok := lookupEnv(EnvConfigFile); ok {
		path = v
	}
	if f := fs.Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	}
	err := c.set.Load(fs, path, lookupEnv)
	c.Sources = c.set.Sources()
	if err != nil {
		return c, err
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(c.DataDir, SQLiteFileName)
		c.Sources["database_url"] = "default, inside data_dir"
	}
	if c.BlobURL == "" {
		c.BlobURL = filepath.Join(c.DataDir, BlobDirName)
		c.Sources["blob_url"] = "default, inside data_dir"
	}
	return c, c.Validate()
}

// Validate checks every setting's form. It touches nothing outside the
// process.
func (c *Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return c.Errorf("listen", "%q is not HOST:PORT", c.Listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return c.Errorf("listen", "port %q is not a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if _, err := net.LookupHost(host); err != nil {
			return c.Errorf("listen", "host %q is neither an IP address nor a name that resolves", host)
		}
	}
	if c.DataDir == "" {
		return c.Errorf("data_dir", "is empty")
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return c.Errorf("log_format", "%q is not json or console", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return c.Errorf("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	for _, p := range c.TrustedProxyList() {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return c.Errorf("trusted_proxies", "%q is neither an IP address nor a CIDR such as 10.0.0.0/8", p)
			}
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c.Errorf("tls_cert", "tls_cert and tls_key go together: set both or neither")
	}
	if (c.SnapshotKeyNext == "") != (c.TimestampKeyNext == "") {
		return c.Errorf("snapshot_key_next", "snapshot_key_next and timestamp_key_next go together: set both or neither")
	}
	if c.SnapshotKeyNext != "" && c.SnapshotKey == "" {
		return c.Errorf("snapshot_key_next", "a rotation needs the current keys too (snapshot_key, timestamp_key)")
	}
	if (c.SnapshotKey == "") != (c.TimestampKey == "") {
		return c.Errorf("snapshot_key", "snapshot_key and timestamp_key go together: set both or neither")
	}
	if c.OnlineRefreshInterval*RefreshChecksPerLifetime > c.TimestampExpiry {
		return c.Errorf("online_refresh_interval", "%s is too long for timestamp_expiry %s: check at least %d times per lifetime", c.OnlineRefreshInterval, c.TimestampExpiry, RefreshChecksPerLifetime)
	}
	if strings.HasPrefix(c.BlobURL, "s3://") && (c.S3AccessKey == "") != (c.S3SecretKey == "") {
		return c.Errorf("s3_access_key", "s3_access_key and s3_secret_key go together: set both or neither")
	}
	if _, err := c.FeedConfigs(); err != nil {
		return err
	}
	if err := c.validateWebhook(); err != nil {
		return err
	}
	if _, err := c.SecurityTxt(time.Now()); err != nil {
		return err
	}
	if (c.SMTPRelay == "") != (c.SMTPFrom == "") {
		return c.Errorf("smtp_from", "smtp_relay and smtp_from go together: set both or neither")
	}
	if c.SMTPRelay != "" {
		if _, _, err := net.SplitHostPort(c.SMTPRelay); err != nil {
			return c.Errorf("smtp_relay", "%q is not HOST:PORT", c.SMTPRelay)
		}
		if a, err := mail.ParseAddress(c.SMTPFrom); err != nil || a.Name != "" {
			return c.Errorf("smtp_from", "%q is not a single e-mail address", c.SMTPFrom)
		}
	}
	return nil
}

func (c *Config) validateWebhook() error {
	if c.AlertWebhookURL == "" {
		if c.AlertWebhookSecret != "" {
			return c.Errorf("alert_webhook_secret", "is set, but alert_webhook_url is not")
		}
		return nil
	}
	u, err := url.Parse(c.AlertWebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c.Errorf("alert_webhook_url", "is not an http(s) URL")
	}
	if len(c.AlertWebhookSecret) < webhook.MinSecretLength {
		return c.Errorf("alert_webhook_secret", "must be at least %d bytes when alert_webhook_url is set (receivers verify the HMAC with it)", webhook.MinSecretLength)
	}
	return nil
}

// TrustedProxyList splits trusted_proxies.
func (c *Config) TrustedProxyList() []string {
	var out []string
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Printable returns the effective configuration as key → value with
// secrets redacted, for `vigil-server config print`.
func (c *Config) Printable() map[string]string {
	if c.set == nil {
		c.set = c.declare()
	}
	return c.set.Printable()
}

// Keys lists the setting keys in their documented order.
func Keys() []string { return Settings().Keys() }

// Redacted is what secrets print as.
const Redacted = settings.Redacted

// SecurityTxt builds security.txt from the settings (nil when no contact
// is set) and checks it at now: an expired one is refused.
func (c *Config) SecurityTxt(now time.Time) (*cvd.SecurityTxt, error) {
	if len(c.SecurityContacts) == 0 {
		if c.SecurityExpires != "" {
			return nil, c.Errorf("security_contact", "security_expires is set, but no security_contact")
		}
		return nil, nil
	}
	exp, err := time.Parse(time.RFC3339, c.SecurityExpires)
	if err != nil {
		return nil, c.Errorf("security_expires", "%q is not an RFC 3339 time (e.g. 2027-06-30T00:00:00Z)", c.SecurityExpires)
	}
	t := cvd.SecurityTxt{Contacts: c.SecurityContacts, Expires: exp, Policy: c.SecurityPolicy, Acknowledgments: c.SecurityAcknowledgment,
		Languages: c.SecurityLanguages, Canonical: c.SecurityCanonical}
	if err := t.Validate(now); err != nil {
		key := "security_contact"
		if strings.Contains(err.Error(), "Expires") || strings.Contains(err.Error(), "expired") {
			key = "security_expires"
		}
		return nil, c.Errorf(key, "%v", err)
	}
	return &t, nil
}

// Markdown is the settings table of docs/configuration.md, generated from
// the declarations.
func Markdown() string { return (&Config{}).declare().Markdown() }
