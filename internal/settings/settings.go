// Package settings is the one way Vigil's programs read their
// configuration: vigil-server, vigil-agent and vigil declare each setting
// once — key, default, usage, whether it is secret — and get, from that one
// declaration, a YAML key, an environment variable and a flag:
//
//	key "slots.dir"   YAML  slots: {dir: …}   env  VIGIL_SLOTS_DIR   flag  --slots-dir
//
// Sources apply in order, later ones winning: the declared default, the YAML
// file, VIGIL_* environment variables, then flags that were set. Every error
// names the setting, its flag, its variable and where the bad value came
// from (with the file's line), so a person knows what to change. Printable
// redacts secrets; Markdown documents the table from the same declarations,
// so the documentation cannot drift from the code.
package settings

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Sources of a value.
const (
	SourceDefault = "default"
	SourceFile    = "file"
	SourceEnv     = "env"
	SourceFlag    = "flag"
)

// Redacted is what secrets print as.
const Redacted = "REDACTED"

// Setting is one declared value.
type Setting struct {
	Key       string
	Usage     string
	Type      string // string, duration, int, bool, list
	secret    bool
	secretURL bool
	allowZero bool
	def       string
	get       func() string
	set       func(string) error
}

// Secret marks the setting as secret: Printable and Markdown never show
// its value.
func (s *Setting) Secret() *Setting { s.secret = true; return s }

// SecretInURL marks a setting whose value may be a URL with credentials
// in it (a database or bucket URL): those parts are redacted, the rest and
// plain paths are shown.
func (s *Setting) SecretInURL() *Setting { s.secretURL = true; return s }

// IsSecret reports whether the setting is secret.
func (s *Setting) IsSecret() bool { return s.secret }

// Default is the declared default, as text.
func (s *Setting) Default() string { return s.def }

// Set is a program's settings.
type Set struct {
	prefix  string
	items   []*Setting
	byKey   map[string]*Setting
	sources map[string]string
}

// New returns an empty set whose variables start with prefix ("VIGIL_").
func New(prefix string) *Set {
	return &Set{prefix: prefix, byKey: map[string]*Setting{}, sources: map[string]string{}}
}

func (s *Set) add(st *Setting) *Setting {
	if _, dup := s.byKey[st.Key]; dup {
		panic("settings: " + st.Key + " declared twice")
	}
	st.def = st.get()
	s.items = append(s.items, st)
	s.byKey[st.Key] = st
	s.sources[st.Key] = SourceDefault
	return st
}

// String declares a text setting.
func (s *Set) String(p *string, key, def, usage string) *Setting {
	*p = def
	return s.add(&Setting{Key: key, Usage: usage, Type: "string", get: func() string { return *p }, set: func(v string) error { *p = v; return nil }})
}

// Duration declares a positive duration ("30s", "2m"); AllowZero admits
// 0 too.
func (s *Set) Duration(p *time.Duration, key string, def time.Duration, usage string) *Setting {
	*p = def
	st := &Setting{Key: key, Usage: usage, Type: "duration"}
	st.get = func() string {
		if *p == 0 && !st.allowZero {
			return ""
		}
		return p.String()
	}
	st.set = func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 2m", v)
		}
		if d < 0 || (d == 0 && !st.allowZero) {
			return fmt.Errorf("%q must be positive", v)
		}
		*p = d
		return nil
	}
	return s.add(st)
}

// AllowZero lets a duration be 0.
func (s *Setting) AllowZero() *Setting { s.allowZero = true; return s }

// Int declares a whole number (int64 range) ≥ min.
func (s *Set) Int(p *int64, key string, def, min int64, usage string) *Setting {
	*p = def
	return s.add(&Setting{Key: key, Usage: usage, Type: "int",
		get: func() string { return strconv.FormatInt(*p, 10) },
		set: func(v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			if n < min {
				return fmt.Errorf("%d is below %d", n, min)
			}
			*p = n
			return nil
		}})
}

// Bool declares true/false.
func (s *Set) Bool(p *bool, key string, def bool, usage string) *Setting {
	*p = def
	return s.add(&Setting{Key: key, Usage: usage, Type: "bool",
		get: func() string { return strconv.FormatBool(*p) },
		set: func(v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p = b
			return nil
		}})
}

// List declares a list: a YAML sequence in the file, comma-separated in the
// environment and flags.
func (s *Set) List(p *[]string, key string, usage string) *Setting {
	return s.add(&Setting{Key: key, Usage: usage, Type: "list",
		get: func() string { return strings.Join(*p, ",") },
		set: func(v string) error {
			*p = nil
			for _, x := range strings.Split(v, ",") {
				if x = strings.TrimSpace(x); x != "" {
					*p = append(*p, x)
				}
			}
			return nil
		}})
}

// FlagName is the flag of a key: "slots.max_unpack_ratio" → "slots-max-unpack-ratio".
func FlagName(key string) string { return strings.NewReplacer("_", "-", ".", "-").Replace(key) }

// EnvName is the variable of a key.
func (s *Set) EnvName(key string) string {
	return s.prefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// Error is a configuration error that names the setting.
type Error struct {
	Key, Flag, Env string
	Source         string
	Msg            string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "configuration: " + e.Msg
	}
	return fmt.Sprintf("configuration: setting %s (--%s, %s, from %s): %s", e.Key, e.Flag, e.Env, e.Source, e.Msg)
}

// Errorf makes an *Error for key, for checks made outside this package.
func (s *Set) Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Flag: FlagName(key), Env: s.EnvName(key), Source: s.Source(key), Msg: fmt.Sprintf(format, args...)}
}

// Source says where key's value came from.
func (s *Set) Source(key string) string {
	if src := s.sources[key]; src != "" {
		return src
	}
	return SourceDefault
}

// SetSource records where a value derived outside this package came from.
func (s *Set) SetSource(key, src string) { s.sources[key] = src }

// Sources returns every key's source.
func (s *Set) Sources() map[string]string {
	out := make(map[string]string, len(s.sources))
	for k, v := range s.sources {
		out[k] = v
	}
	return out
}

// RegisterFlags adds one flag per setting to fs.
func (s *Set) RegisterFlags(fs *pflag.FlagSet) {
	for _, st := range s.items {
		def := st.def
		if st.secret || st.secretURL {
			def = ""
		}
		fs.String(FlagName(st.Key), def, st.Usage+" ["+s.EnvName(st.Key)+"]")
	}
}

// Load applies the YAML file (when path is not empty), the environment
// (lookupEnv, usually os.LookupEnv) and the flags of fs that were set.
func (s *Set) Load(fs *pflag.FlagSet, path string, lookupEnv func(string) (string, bool)) error {
	if path != "" {
		if err := s.applyFile(path); err != nil {
			return err
		}
	}
	for _, st := range s.items {
		if v, ok := lookupEnv(s.EnvName(st.Key)); ok {
			if err := st.set(v); err != nil {
				return &Error{Key: st.Key, Flag: FlagName(st.Key), Env: s.EnvName(st.Key), Source: SourceEnv, Msg: err.Error()}
			}
			s.sources[st.Key] = SourceEnv
		}
	}
	if fs == nil {
		return nil
	}
	for _, st := range s.items {
		if f := fs.Lookup(FlagName(st.Key)); f != nil && f.Changed {
			if err := st.set(f.Value.String()); err != nil {
				return &Error{Key: st.Key, Flag: FlagName(st.Key), Env: s.EnvName(st.Key), Source: SourceFlag, Msg: err.Error()}
			}
			s.sources[st.Key] = SourceFlag
		}
	}
	return nil
}

func (s *Set) applyFile(path string) error {
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
	return s.applyNode(path, "", doc.Content[0])
}

// applyNode applies a mapping; nested mappings are sections ("slots:").
func (s *Set) applyNode(path, prefix string, m *yaml.Node) error {
	if m.Kind != yaml.MappingNode {
		return &Error{Msg: fmt.Sprintf("config file %q line %d: want a mapping of setting: value", path, m.Line)}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		st, ok := s.byKey[key]
		if !ok && v.Kind == yaml.MappingNode && s.isSection(key) {
			if err := s.applyNode(path, key+".", v); err != nil {
				return err
			}
			continue
		}
		if !ok {
			return &Error{Msg: fmt.Sprintf("config file %q line %d: unknown setting %q (known: %s)", path, k.Line, key, strings.Join(s.Keys(), ", "))}
		}
		val, err := scalar(st, v)
		if err != nil {
			return &Error{Key: key, Flag: FlagName(key), Env: s.EnvName(key), Source: SourceFile, Msg: fmt.Sprintf("%s line %d: %v", path, v.Line, err)}
		}
		if err := st.set(val); err != nil {
			return &Error{Key: key, Flag: FlagName(key), Env: s.EnvName(key), Source: SourceFile, Msg: fmt.Sprintf("%s line %d: %v", path, v.Line, err)}
		}
		s.sources[key] = SourceFile
	}
	return nil
}

func scalar(st *Setting, v *yaml.Node) (string, error) {
	switch {
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	case v.Kind == yaml.SequenceNode && st.Type == "list":
		var parts []string
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode || strings.Contains(item.Value, ",") {
				return "", fmt.Errorf("list entries are single values without commas")
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a single value")
}

func (s *Set) isSection(prefix string) bool {
	for _, st := range s.items {
		if strings.HasPrefix(st.Key, prefix+".") {
			return true
		}
	}
	return false
}

// Keys lists the setting keys in their declared order.
func (s *Set) Keys() []string {
	out := make([]string, 0, len(s.items))
	for _, st := range s.items {
		out = append(out, st.Key)
	}
	return out
}

// Settings lists the declarations, in order.
func (s *Set) Settings() []*Setting { return append([]*Setting(nil), s.items...) }

// Value returns key's current value as text.
func (s *Set) Value(key string) string { return s.byKey[key].get() }

// Printable returns key → value with secrets redacted (config print).
func (s *Set) Printable() map[string]string {
	out := map[string]string{}
	for _, st := range s.items {
		v := st.get()
		switch {
		case st.secretURL:
			v = RedactURL(v)
		case st.secret && v != "":
			v = Redacted
		}
		out[st.Key] = v
	}
	return out
}

// RedactURL hides the credentials inside a URL: the password (or an S3
// access key written as the user) and secret-looking query values. A value
// that is not a URL (a file path) is returned as it is.
func RedactURL(v string) string {
	if !strings.Contains(v, "://") {
		return v
	}
	u, err := url.Parse(v)
	if err != nil {
		return Redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Redacted)
	} else if u.User != nil && u.User.Username() != "" && u.Scheme == "s3" {
		u.User = url.User(Redacted)
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

// Markdown is the table of settings for the documentation: key, flag,
// variable, default and meaning, from the declarations themselves.
func (s *Set) Markdown() string {
	var b strings.Builder
	b.WriteString("| setting | flag | variable | default | meaning |\n|---|---|---|---|---|\n")
	for _, st := range s.items {
		def := st.def
		if (st.secret || st.secretURL) && def != "" {
			def = Redacted
		}
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s | %s |\n", st.Key, FlagName(st.Key), s.EnvName(st.Key), def, strings.ReplaceAll(st.Usage, "|", "\\|"))
	}
	return b.String()
}

// SortedKeys lists the keys in lexical order.
func (s *Set) SortedKeys() []string {
	k := s.Keys()
	sort.Strings(k)
	return k
}

// ReplaceSection returns doc with the text between the markers
// "<!-- NAME:begin -->" and "<!-- NAME:end -->" replaced by body: how a
// program's settings table is kept inside docs/configuration.md (each
// program's test regenerates its section and fails when it changed).
func ReplaceSection(doc, name, body string) (string, error) {
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("the document has no %q … %q section", strings.TrimSpace(begin), end)
	}
	return doc[:i+len(begin)] + body + doc[j:], nil
}
