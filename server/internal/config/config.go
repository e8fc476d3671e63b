// Package config loads vigil-server's configuration. Each setting has one
// name, used as the YAML key (listen), the environment variable
// (VIGIL_LISTEN) and the flag (--listen). Sources apply in order, later ones
// winning: built-in defaults, the YAML file (--config or VIGIL_CONFIG),
// VIGIL_* environment variables, then flags.
//
// Validation happens once, at start, and every error names the setting, its
// flag and its variable, so an operator knows what to change. Checks that
// need the outside world (is the database reachable, is the data directory
// writable) run in the app package, which also names the setting.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
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

	// Sources records where each setting's value came from: default,
	// file, env or flag.
	Sources map[string]string
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	return Config{
		Listen:          DefaultListen,
		DataDir:         DefaultDataDir,
		LogFormat:       DefaultLogFormat,
		LogLevel:        DefaultLogLevel,
		StartupTimeout:  DefaultStartupTimeout,
		ShutdownTimeout: DefaultShutdownTimeout,
		BodyReadTimeout: DefaultBodyReadTimeout,

		TimestampExpiry:       DefaultTimestampExpiry,
		SnapshotExpiry:        DefaultSnapshotExpiry,
		OnlineRefreshInterval: DefaultOnlineRefreshInterval,
	}
}

// setting describes one configuration value.
type setting struct {
	key    string
	usage  string
	secret bool
	get    func(*Config) string
	set    func(*Config, string) error
}

func str(p func(*Config) *string) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return *p(c) }, func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *time.Duration) (func(*Config) string, func(*Config, string) error) {
	return func(c *Config) string { return p(c).String() }, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 2m", v)
		}
		if d <= 0 {
			return fmt.Errorf("%q must be positive", v)
		}
		*p(c) = d
		return nil
	}
}

func mk(key, usage string, secret bool, gs func(*Config) string, ss func(*Config, string) error) setting {
	return setting{key: key, usage: usage, secret: secret, get: gs, set: ss}
}

func settings() []setting {
	s := func(key, usage string, secret bool, p func(*Config) *string) setting {
		g, st := str(p)
		return mk(key, usage, secret, g, st)
	}
	d := func(key, usage string, p func(*Config) *time.Duration) setting {
		g, st := dur(p)
		return mk(key, usage, false, g, st)
	}
	return []setting{
		s("listen", "HOST:PORT to serve the API, repository and probes on", false, func(c *Config) *string { return &c.Listen }),
		s("data_dir", "directory for the embedded default's SQLite file and blobs", false, func(c *Config) *string { return &c.DataDir }),
		s("database_url", "postgres://USER:PASS@HOST/DB selects PostgreSQL; a file path selects SQLite (default DATA_DIR/"+SQLiteFileName+")", true, func(c *Config) *string { return &c.DatabaseURL }),
		s("blob_url", "s3://BUCKET?endpoint=HOST:PORT[&region=R&tls=false&path_style=true] or a directory (default DATA_DIR/"+BlobDirName+")", true, func(c *Config) *string { return &c.BlobURL }),
		s("s3_access_key", "S3 access key (with an s3:// blob_url)", false, func(c *Config) *string { return &c.S3AccessKey }),
		s("s3_secret_key", "S3 secret key (with an s3:// blob_url)", true, func(c *Config) *string { return &c.S3SecretKey }),
		s("tls_cert", "PEM certificate file; with tls_key, serve HTTPS", false, func(c *Config) *string { return &c.TLSCert }),
		s("tls_key", "PEM private key file for tls_cert", false, func(c *Config) *string { return &c.TLSKey }),
		s("log_format", "json (production) or console (development)", false, func(c *Config) *string { return &c.LogFormat }),
		s("log_level", "debug, info, warn or error", false, func(c *Config) *string { return &c.LogLevel }),
		d("startup_timeout", "how long start-up may wait for the database and object storage", func(c *Config) *time.Duration { return &c.StartupTimeout }),
		d("shutdown_timeout", "how long in-flight requests get to finish on SIGTERM", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		d("body_read_timeout", "how long reading a request body may take (an image upload: the longest pause between reads)", func(c *Config) *time.Duration { return &c.BodyReadTimeout }),
		s("trusted_proxies", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is believed; empty trusts none", false, func(c *Config) *string { return &c.TrustedProxies }),
		s("bootstrap_token", "bearer token for the management API until operator roles exist; empty disables it", true, func(c *Config) *string { return &c.BootstrapToken }),
		s("snapshot_key", "online snapshot key: a PEM private key file or a KMS URI (awskms://…, fakekms:// in tests)", false, func(c *Config) *string { return &c.SnapshotKey }),
		s("timestamp_key", "online timestamp key: a PEM private key file or a KMS URI", false, func(c *Config) *string { return &c.TimestampKey }),
		d("timestamp_expiry", "lifetime of each signed timestamp; re-signed when a third remains", func(c *Config) *time.Duration { return &c.TimestampExpiry }),
		d("snapshot_expiry", "lifetime of each signed snapshot; re-signed when a third remains", func(c *Config) *time.Duration { return &c.SnapshotExpiry }),
		d("online_refresh_interval", "how often to check whether timestamp or snapshot need re-signing", func(c *Config) *time.Duration { return &c.OnlineRefreshInterval }),
	}
}

// FlagName is the flag for a setting key.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName is the environment variable for a setting key.
func EnvName(key string) string { return EnvPrefix + strings.ToUpper(key) }

// Error is a configuration error that names the setting.
type Error struct {
	Key    string
	Source string // default, file, env or flag
	Msg    string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "configuration: " + e.Msg
	}
	return fmt.Sprintf("configuration: setting %s (--%s, %s, from %s): %s", e.Key, FlagName(e.Key), EnvName(e.Key), e.Source, e.Msg)
}

// Errorf makes an *Error for key, for checks made outside this package.
func (c *Config) Errorf(key, format string, args ...any) error {
	src := c.Sources[key]
	if src == "" {
		src = "default"
	}
	return &Error{Key: key, Source: src, Msg: fmt.Sprintf(format, args...)}
}

// RegisterFlags adds --config and one flag per setting to fs.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (also "+EnvConfigFile+")")
	def := Defaults()
	for _, s := range settings() {
		dv := s.get(&def)
		if dv == "" || dv == "0s" {
			dv = ""
		}
		fs.String(FlagName(s.key), dv, s.usage+" ["+EnvName(s.key)+"]")
	}
}

// Load builds the effective configuration from defaults, the YAML file,
// the environment (lookupEnv, usually os.LookupEnv) and the flags in fs that
// were set, then validates it.
func Load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	c := Defaults()
	c.Sources = map[string]string{}
	all := settings()
	for _, s := range all {
		c.Sources[s.key] = "default"
	}
	path := ""
	if v, ok := lookupEnv(EnvConfigFile); ok {
		path = v
	}
	if f := fs.Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		if err := c.applyFile(path, all); err != nil {
			return c, err
		}
	}
	for _, s := range all {
		if v, ok := lookupEnv(EnvName(s.key)); ok {
			if err := s.set(&c, v); err != nil {
				return c, &Error{Key: s.key, Source: "env", Msg: err.Error()}
			}
			c.Sources[s.key] = "env"
		}
	}
	for _, s := range all {
		if f := fs.Lookup(FlagName(s.key)); f != nil && f.Changed {
			if err := s.set(&c, f.Value.String()); err != nil {
				return c, &Error{Key: s.key, Source: "flag", Msg: err.Error()}
			}
			c.Sources[s.key] = "flag"
		}
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

func (c *Config) applyFile(path string, all []setting) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("config file %q cannot be read: %v", path, err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &Error{Msg: fmt.Sprintf("config file %q is not valid YAML: %v", path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return &Error{Msg: fmt.Sprintf("config file %q: want a mapping of setting: value", path)}
	}
	byKey := map[string]setting{}
	var known []string
	for _, s := range all {
		byKey[s.key] = s
		known = append(known, s.key)
	}
	sort.Strings(known)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		s, ok := byKey[k.Value]
		if !ok {
			return &Error{Msg: fmt.Sprintf("config file %q line %d: unknown setting %q (known: %s)", path, k.Line, k.Value, strings.Join(known, ", "))}
		}
		if v.Kind != yaml.ScalarNode {
			return &Error{Key: s.key, Source: "file", Msg: fmt.Sprintf("%s line %d: want a single value", path, v.Line)}
		}
		if err := s.set(c, v.Value); err != nil {
			return &Error{Key: s.key, Source: "file", Msg: fmt.Sprintf("%s line %d: %v", path, v.Line, err)}
		}
		c.Sources[s.key] = "file"
	}
	return nil
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
	if (c.SnapshotKey == "") != (c.TimestampKey == "") {
		return c.Errorf("snapshot_key", "snapshot_key and timestamp_key go together: set both or neither")
	}
	if c.OnlineRefreshInterval*RefreshChecksPerLifetime > c.TimestampExpiry {
		return c.Errorf("online_refresh_interval", "%s is too long for timestamp_expiry %s: check at least %d times per lifetime", c.OnlineRefreshInterval, c.TimestampExpiry, RefreshChecksPerLifetime)
	}
	if strings.HasPrefix(c.BlobURL, "s3://") && (c.S3AccessKey == "") != (c.S3SecretKey == "") {
		return c.Errorf("s3_access_key", "s3_access_key and s3_secret_key go together: set both or neither")
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
	out := map[string]string{}
	for _, s := range settings() {
		v := s.get(c)
		if s.secret {
			v = Redact(s.key, v)
		}
		out[s.key] = v
	}
	return out
}

// Keys lists the setting keys in their documented order.
func Keys() []string {
	var ks []string
	for _, s := range settings() {
		ks = append(ks, s.key)
	}
	return ks
}

// Redacted is what secrets print as.
const Redacted = "REDACTED"

// Redact hides a secret value: passwords inside URLs, whole values otherwise.
func Redact(key, v string) string {
	if v == "" {
		return ""
	}
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err != nil {
			return Redacted
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
		q := u.Query()
		for k := range q {
			lk := strings.ToLower(k)
			for _, secret := range []string{"password", "secret", "key", "token", "credential", "signature"} {
				if strings.Contains(lk, secret) {
					q.Set(k, Redacted)
				}
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if key == "database_url" || key == "blob_url" {
		return v // a SQLite path or a directory holds no secret
	}
	return Redacted
}
