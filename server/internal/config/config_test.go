package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-ota/vigil/internal/settings/settingsdoc"
	"github.com/vigil-ota/vigil/server/internal/config"
)

func load(t *testing.T, env map[string]string, args ...string) (config.Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return config.Load(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func writeFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreTheEmbeddedSetup(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./var" || c.DatabaseURL != filepath.Join("var", "vigil.db") || c.BlobURL != filepath.Join("var", "blobs") {
		t.Fatalf("defaults: %+v", c)
	}
	if c.ShutdownTimeout != config.DefaultShutdownTimeout {
		t.Fatalf("shutdown timeout %v", c.ShutdownTimeout)
	}
}

func TestPrecedenceIsDefaultsThenFileThenEnvThenFlags(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:1001\ndata_dir: /from/file\nlog_level: warn\nshutdown_timeout: 5s\n")
	c, err := load(t, map[string]string{"VIGIL_LISTEN": "127.0.0.1:1002", "VIGIL_DATA_DIR": "/from/env"}, "--config", file, "--listen", "127.0.0.1:1003")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1003" || c.Sources["listen"] != "flag" {
		t.Errorf("listen %s from %s, want the flag", c.Listen, c.Sources["listen"])
	}
	if c.DataDir != "/from/env" || c.Sources["data_dir"] != "env" {
		t.Errorf("data_dir %s from %s, want env", c.DataDir, c.Sources["data_dir"])
	}
	if c.LogLevel != "warn" || c.Sources["log_level"] != "file" {
		t.Errorf("log_level %s from %s, want file", c.LogLevel, c.Sources["log_level"])
	}
	if c.ShutdownTimeout != 5*time.Second {
		t.Errorf("shutdown_timeout %v", c.ShutdownTimeout)
	}
	if c.LogFormat != "json" || c.Sources["log_format"] != "default" {
		t.Errorf("log_format %s from %s", c.LogFormat, c.Sources["log_format"])
	}
	if c.DatabaseURL != "/from/env/vigil.db" {
		t.Errorf("database_url %s does not follow data_dir", c.DatabaseURL)
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:2001\n")
	c, err := load(t, map[string]string{"VIGIL_CONFIG": file})
	if err != nil || c.Listen != "127.0.0.1:2001" {
		t.Fatalf("%+v %v", c.Listen, err)
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		file string
		args []string
		want []string
	}{
		{"unknown key in file", nil, "listen: 127.0.0.1:1\nlisten_addr: x\n", nil, []string{`unknown setting "listen_addr"`, "line 2"}},
		{"not yaml", nil, "listen: [unclosed", nil, []string{"not valid YAML"}},
		{"listen not host:port", map[string]string{"VIGIL_LISTEN": "8080"}, "", nil, []string{"setting listen", "VIGIL_LISTEN", "from env"}},
		{"port out of range", nil, "", []string{"--listen", "127.0.0.1:99999"}, []string{"setting listen", "--listen", "from flag"}},
		{"bad duration", nil, "shutdown_timeout: soon\n", nil, []string{"setting shutdown_timeout", "not a duration"}},
		{"negative duration", map[string]string{"VIGIL_STARTUP_TIMEOUT": "-1s"}, "", nil, []string{"setting startup_timeout", "positive"}},
		{"log format", nil, "", []string{"--log-format", "xml"}, []string{"setting log_format"}},
		{"tls half set", nil, "", []string{"--tls-cert", "c.pem"}, []string{"setting tls_cert", "set both or neither"}},
		{"s3 keys half set", nil, "", []string{"--blob-url", "s3://b?endpoint=h:1", "--s3-access-key", "a"}, []string{"s3_access_key"}},
		{"nested value", nil, "listen:\n  host: x\n", nil, []string{"setting listen", "single value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.file != "" {
				args = append([]string{"--config", writeFile(t, c.file)}, args...)
			}
			_, err := load(t, c.env, args...)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPrintableRedactsSecrets(t *testing.T) {
	c, err := load(t, map[string]string{"VIGIL_S3_SECRET_KEY": "s3cr3t", "VIGIL_S3_ACCESS_KEY": "AKIA"},
		"--database-url", "postgres://vigil:hunter2@db:5432/vigil?sslmode=disable", "--blob-url", "s3://b?endpoint=h:1")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Printable()
	all := strings.Join([]string{p["database_url"], p["s3_secret_key"], p["blob_url"]}, " ")
	if strings.Contains(all, "hunter2") || strings.Contains(all, "s3cr3t") {
		t.Fatalf("secrets printed: %s", all)
	}
	if !strings.Contains(p["database_url"], "vigil:REDACTED@db:5432") || p["s3_secret_key"] != config.Redacted || p["s3_access_key"] != "AKIA" {
		t.Fatalf("printable: %v", p)
	}
}

// Finding 13: credentials written into blob_url (which the S3 backend then
// refuses) must not be printed by `config print` either.
func TestPrintableRedactsCredentialsInsideBlobURL(t *testing.T) {
	for _, u := range []string{"s3://AKIA:hunter2@bucket?endpoint=h:1", "s3://bucket?endpoint=h:1&secret_key=hunter2", "s3://bucket?endpoint=h:1&X-Amz-Signature=hunter2"} {
		c, _ := load(t, nil, "--blob-url", u)
		if p := c.Printable(); strings.Contains(p["blob_url"], "hunter2") {
			t.Errorf("%s printed as %s", u, p["blob_url"])
		}
	}
	c, _ := load(t, nil, "--blob-url", "/var/lib/vigil/blobs")
	if p := c.Printable(); p["blob_url"] != "/var/lib/vigil/blobs" {
		t.Errorf("a directory blob_url printed as %s", p["blob_url"])
	}
}

func TestConfigurationDocListsEveryServerSetting(t *testing.T) {
	settingsdoc.CheckDocSection(t, "server-settings", config.Markdown())
}
